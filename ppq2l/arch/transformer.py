"""The Query2Label transformer: DETR's encoder-decoder with positional encodings added to the
attention queries and keys, decoder self-attention removed by default. Parameter names equal the
official implementation's, so its checkpoints load by name."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ppq2l.checks import integer
from ppq2l.errors import ConfigError

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "gelu": F.gelu}


def activation_function(name: str) -> Callable[[Tensor], Tensor]:
    """The feed-forward activation called `name` (relu or gelu)."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown transformer activation {name!r}; use one of "
                          f"{', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def with_position(tensor: Tensor, position: Tensor | None) -> Tensor:
    """`tensor + position`, or `tensor` when there is no position."""
    return tensor if position is None else tensor + position


def attention_weights(attention: nn.Module, query: Tensor, key: Tensor) -> Tensor:
    """Softmax weights [B, heads, Lq, Lk] of a multi-head attention with nn.MultiheadAttention's
    packed projections (`in_proj_weight`, `in_proj_bias`, `num_heads`) for batch-first inputs.
    Recomputed from the projections, so the attention itself keeps its fast fused path and its
    output stays bit for bit that of a forward that asks for no weights."""
    weight_q, weight_k, _ = attention.in_proj_weight.chunk(3)
    bias_q, bias_k, _ = attention.in_proj_bias.chunk(3)
    heads = attention.num_heads
    queries = F.linear(query, weight_q, bias_q)
    keys = F.linear(key, weight_k, bias_k)
    queries = queries.reshape(queries.shape[0], queries.shape[1], heads, -1).transpose(1, 2)
    keys = keys.reshape(keys.shape[0], keys.shape[1], heads, -1).transpose(1, 2)
    scale = 1.0 / math.sqrt(queries.shape[-1])
    return torch.softmax((queries * scale) @ keys.transpose(-2, -1), dim=-1)


def attention_maps(weights: Tensor, head: int | None, size: tuple[int, int]) -> Tensor:
    """Attention weights [B, heads, K, h*w] as maps [B, K, h, w]: the mean over the heads, or
    head `head` alone."""
    if head is None:
        selected = weights.mean(dim=1)
    else:
        heads = weights.shape[1]
        integer(head, "head", minimum=0, maximum=heads - 1,
                why=f"the attention has {heads} heads; null averages them")
        selected = weights[:, head]
    # the sizes stay as given (not int()): traced for ONNX, they follow the input's size
    return selected.reshape(selected.shape[0], selected.shape[1], size[0], size[1])


def check_layer(layer: int, num_layers: int, what: str) -> int:
    """`layer` as an index in 0..num_layers-1 (negative counts from the last), or a ConfigError."""
    integer(layer, "layer", minimum=-num_layers, maximum=num_layers - 1,
            why=f"{what} has {num_layers} decoder layer(s); -1 is the last")
    return layer % num_layers


class TransformerEncoderLayer(nn.Module):
    """Self-attention (queries and keys carry the position, values do not) and a feed-forward
    block, each with a residual; LayerNorm after (post-norm) or before (pre-norm) each block."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str = "relu",
                 normalize_before: bool = False) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = activation_function(activation)
        self.normalize_before = normalize_before

    def attend(self, src: Tensor, pos: Tensor | None) -> Tensor:
        """Self-attention output for the (already normalized, if pre-norm) sequence."""
        query = key = with_position(src, pos)
        return self.self_attn(query, key, value=src, need_weights=False)[0]

    def feed_forward(self, src: Tensor) -> Tensor:
        """Two linear layers with the activation and dropout between them."""
        return self.linear2(self.dropout(self.activation(self.linear1(src))))

    def forward(self, src: Tensor, pos: Tensor | None = None) -> Tensor:
        """Encode a sequence [B, N, d] whose positions are `pos` ([1 or B, N, d])."""
        if self.normalize_before:
            src = src + self.dropout1(self.attend(self.norm1(src), pos))
            return src + self.dropout2(self.feed_forward(self.norm2(src)))
        src = self.norm1(src + self.dropout1(self.attend(src, pos)))
        return self.norm2(src + self.dropout2(self.feed_forward(src)))


class TransformerDecoderLayer(nn.Module):
    """Optional self-attention among the queries, cross-attention from the queries (plus
    query_pos) to the memory (keys plus pos), and a feed-forward block. Without self-attention
    the layer has no `self_attn`, `dropout1` or `norm1`, as in the official model."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str = "relu", normalize_before: bool = False,
                 use_self_attn: bool = False) -> None:
        super().__init__()
        self.use_self_attn = use_self_attn
        if use_self_attn:
            self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout,
                                                   batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout,
                                                    batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        if use_self_attn:
            self.norm1 = nn.LayerNorm(d_model)
            self.dropout1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = activation_function(activation)
        self.normalize_before = normalize_before

    def attend_self(self, tgt: Tensor, query_pos: Tensor | None) -> Tensor:
        """Self-attention among the queries."""
        query = key = with_position(tgt, query_pos)
        return self.self_attn(query, key, value=tgt, need_weights=False)[0]

    def attend_memory(self, tgt: Tensor, memory: Tensor, pos: Tensor | None,
                      query_pos: Tensor | None, need_weights: bool = False
                      ) -> tuple[Tensor, Tensor | None]:
        """Cross-attention from the queries to the encoder memory, and its weights
        [B, heads, K, N] when `need_weights` (else None)."""
        query, key = with_position(tgt, query_pos), with_position(memory, pos)
        attended = self.multihead_attn(query, key, value=memory, need_weights=False)[0]
        return attended, (attention_weights(self.multihead_attn, query, key) if need_weights
                          else None)

    def feed_forward(self, tgt: Tensor) -> Tensor:
        """Two linear layers with the activation and dropout between them."""
        return self.linear2(self.dropout(self.activation(self.linear1(tgt))))

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor | None = None,
                query_pos: Tensor | None = None) -> Tensor:
        """Update the queries `tgt` [B, K, d] from `memory` [B, N, d]."""
        return self.forward_with_attention(tgt, memory, pos, query_pos, need_weights=False)[0]

    def forward_with_attention(self, tgt: Tensor, memory: Tensor, pos: Tensor | None = None,
                               query_pos: Tensor | None = None, need_weights: bool = True
                               ) -> tuple[Tensor, Tensor | None]:
        """The updated queries and the cross-attention weights [B, heads, K, N] (None unless
        `need_weights`)."""
        if self.normalize_before:
            if self.use_self_attn:
                tgt = tgt + self.dropout1(self.attend_self(self.norm1(tgt), query_pos))
            attended, weights = self.attend_memory(self.norm2(tgt), memory, pos, query_pos,
                                                   need_weights)
            tgt = tgt + self.dropout2(attended)
            return tgt + self.dropout3(self.feed_forward(self.norm3(tgt))), weights
        if self.use_self_attn:
            tgt = self.norm1(tgt + self.dropout1(self.attend_self(tgt, query_pos)))
        attended, weights = self.attend_memory(tgt, memory, pos, query_pos, need_weights)
        tgt = self.norm2(tgt + self.dropout2(attended))
        return self.norm3(tgt + self.dropout3(self.feed_forward(tgt))), weights


class TransformerEncoder(nn.Module):
    """A stack of encoder layers, with a final LayerNorm only when given one (pre-norm)."""

    def __init__(self, layers: list[TransformerEncoderLayer], norm: nn.LayerNorm | None = None
                 ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.num_layers = len(layers)
        self.norm = norm

    def forward(self, src: Tensor, pos: Tensor | None = None) -> Tensor:
        """Encode the sequence [B, N, d]."""
        for layer in self.layers:
            src = layer(src, pos=pos)
        return src if self.norm is None else self.norm(src)


class TransformerDecoder(nn.Module):
    """A stack of decoder layers followed by a LayerNorm; returns [L, B, K, d], L = 1 (the last
    layer) unless `return_intermediate`, then every layer's normalized output."""

    def __init__(self, layers: list[TransformerDecoderLayer], norm: nn.LayerNorm,
                 return_intermediate: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.num_layers = len(layers)
        self.norm = norm
        self.return_intermediate = return_intermediate

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor | None = None,
                query_pos: Tensor | None = None) -> Tensor:
        """Decode the queries `tgt` [B, K, d] against `memory` [B, N, d]."""
        outputs = []
        for layer in self.layers:
            tgt = layer(tgt, memory, pos=pos, query_pos=query_pos)
            if self.return_intermediate:
                outputs.append(self.norm(tgt))
        if not self.return_intermediate:
            outputs.append(self.norm(tgt))
        return torch.stack(outputs)

    def forward_with_attention(self, tgt: Tensor, memory: Tensor, pos: Tensor | None = None,
                               query_pos: Tensor | None = None, attention_layer: int = -1
                               ) -> tuple[Tensor, Tensor]:
        """`forward`'s output and the cross-attention weights [B, heads, K, N] of layer
        `attention_layer` (negative counts from the last)."""
        chosen = check_layer(attention_layer, self.num_layers, "the transformer")
        outputs, weights = [], None
        for index, layer in enumerate(self.layers):
            if index == chosen:
                tgt, weights = layer.forward_with_attention(tgt, memory, pos, query_pos)
            else:
                tgt = layer(tgt, memory, pos=pos, query_pos=query_pos)
            if self.return_intermediate:
                outputs.append(self.norm(tgt))
        if not self.return_intermediate:
            outputs.append(self.norm(tgt))
        return torch.stack(outputs), weights


class Transformer(nn.Module):
    """DETR-style encoder-decoder as in the official Query2Label: post-norm by default, the
    decoder's queries start at zero and get `query_embed` re-added in every layer.
    `rm_first_self_attn` / `rm_self_attn_dec` remove the self-attention of decoder layer 0 / of
    the later layers (both on by default)."""

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", normalize_before: bool = False,
                 return_intermediate_dec: bool = False, rm_self_attn_dec: bool = True,
                 rm_first_self_attn: bool = True) -> None:
        super().__init__()
        if d_model % nhead:
            raise ConfigError(f"transformer width {d_model} is not divisible by the number of "
                              f"attention heads {nhead}")
        self.d_model = d_model
        self.nhead = nhead
        self.num_encoder_layers = num_encoder_layers
        self.rm_self_attn_dec = rm_self_attn_dec
        self.rm_first_self_attn = rm_first_self_attn
        layer_args = (d_model, nhead, dim_feedforward, dropout, activation, normalize_before)
        self.encoder = TransformerEncoder(
            [TransformerEncoderLayer(*layer_args) for _ in range(num_encoder_layers)],
            nn.LayerNorm(d_model) if normalize_before else None)
        self.decoder = TransformerDecoder(
            [TransformerDecoderLayer(*layer_args, use_self_attn=not self.removes_self_attn(i))
             for i in range(num_decoder_layers)],
            nn.LayerNorm(d_model), return_intermediate=return_intermediate_dec)
        self.reset_parameters()

    def removes_self_attn(self, layer_index: int) -> bool:
        """Whether decoder layer `layer_index` is built without self-attention."""
        return self.rm_first_self_attn if layer_index == 0 else self.rm_self_attn_dec

    def reset_parameters(self) -> None:
        """Xavier-uniform initialization of every weight matrix (all parameters with dim > 1)."""
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(self, src: Tensor, query_embed: Tensor, pos_embed: Tensor
                ) -> tuple[Tensor, Tensor]:
        """Decode the queries `query_embed` [K, d] against the feature map `src` [B, d, H, W]
        with positions `pos_embed` [1 or B, d, H, W]. Returns the decoder output [L, B, K, d]
        and the encoder memory [B, d, H, W]."""
        batch, channels, height, width = src.shape
        sequence = src.flatten(2).transpose(1, 2)  # [B, HW, d]
        pos = pos_embed.flatten(2).transpose(1, 2)  # [1 or B, HW, d]
        query_pos = query_embed.unsqueeze(0).expand(batch, -1, -1)
        memory = self.encoder(sequence, pos=pos) if self.num_encoder_layers > 0 else sequence
        tgt = torch.zeros_like(query_pos)
        decoded = self.decoder(tgt, memory, pos=pos, query_pos=query_pos)
        return decoded, memory.transpose(1, 2).reshape(batch, channels, height, width)

    def forward_with_attention(self, src: Tensor, query_embed: Tensor, pos_embed: Tensor,
                               attention_layer: int = -1) -> tuple[Tensor, Tensor, Tensor]:
        """`forward`'s outputs plus the cross-attention weights [B, heads, K, H*W] of decoder
        layer `attention_layer` (negative counts from the last). `forward` is left as it was
        (not a call of this), so the plain path and its exported graph stay op for op the same."""
        batch, channels, height, width = src.shape
        sequence = src.flatten(2).transpose(1, 2)
        pos = pos_embed.flatten(2).transpose(1, 2)
        query_pos = query_embed.unsqueeze(0).expand(batch, -1, -1)
        memory = self.encoder(sequence, pos=pos) if self.num_encoder_layers > 0 else sequence
        tgt = torch.zeros_like(query_pos)
        decoded, weights = self.decoder.forward_with_attention(tgt, memory, pos, query_pos,
                                                               attention_layer)
        return decoded, memory.transpose(1, 2).reshape(batch, channels, height, width), weights
