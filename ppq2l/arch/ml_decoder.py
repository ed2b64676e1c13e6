"""ML-Decoder (Ridnik et al., 2021): a classification head where a few queries attend to the
backbone's feature tokens through one cross-attention-only decoder layer, and a group fully
connected layer turns each decoded query into the logits of its group of classes.

The head's state_dict keys are those of the official Alibaba-MIIL module (`decoder.embed_standart`,
`decoder.query_embed`, `decoder.layers.0.*`, `decoder.duplicate_pooling`, ...), so official
weights load after mapping only the backbone prefix. Unlike the official code it runs on torch 2.x:
the official module nests its layer in `nn.TransformerDecoder`, whose forward on torch >= 2.1 reads
`layers[0].self_attn` (which the layer lacks) and passes `tgt_is_causal`/`memory_is_causal`
keywords the layer does not accept; here the layers are called directly. The official group FC is
a Python loop over queries; here it is one batched matmul.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ppq2l.arch.backbone import build_backbone
from ppq2l.arch.ml_decoder_word_vectors import load_word_vectors
from ppq2l.arch.query2label import CLASS_NUM
from ppq2l.arch.transformer import attention_maps, attention_weights, check_layer
from ppq2l.checks import integer, number
from ppq2l.errors import ConfigError
from ppq2l.registry import ARCHS

# The official default (train.py --num-of-groups -1): any negative number means this many queries,
# or one per class when there are fewer classes.
DEFAULT_MAX_GROUPS = 100
OFFICIAL_DEFAULT = -1
PER_CLASS = "per_class"  # num_of_groups: one query per class, whatever the class count


class CrossAttention(nn.Module):
    """Multi-head attention of queries to a memory, with nn.MultiheadAttention's parameter layout
    (`in_proj_weight` [3D, D], `in_proj_bias`, `out_proj`) and initialisation, so official weights
    load. Written out because nn.MultiheadAttention, when key and value are the same tensor,
    takes a packed projection path whose ONNX trace fixes the memory length: the exported model
    then fails at any other input size."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def split_heads(self, x: Tensor) -> Tensor:
        """[B, L, D] -> [B, heads, L, D / heads]."""
        return x.reshape(x.shape[0], x.shape[1], self.num_heads, -1).transpose(1, 2)

    def forward(self, queries: Tensor, memory: Tensor) -> Tensor:
        """Attended values [B, K, D] for queries [B, K, D] over memory [B, N, D]."""
        weight_q, weight_k, weight_v = self.in_proj_weight.chunk(3)
        bias_q, bias_k, bias_v = self.in_proj_bias.chunk(3)
        attended = F.scaled_dot_product_attention(
            self.split_heads(F.linear(queries, weight_q, bias_q)),
            self.split_heads(F.linear(memory, weight_k, bias_k)),
            self.split_heads(F.linear(memory, weight_v, bias_v)),
            dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(attended.transpose(1, 2).flatten(2))


class MLDecoderLayer(nn.Module):
    """A post-norm transformer decoder layer without self-attention: the queries are doubled by a
    residual on themselves (where self-attention would be), cross-attend to the memory, then pass
    a ReLU feed-forward block; each step ends in a LayerNorm."""

    def __init__(self, d_model: int, nhead: int = 8, dim_feedforward: int = 2048,
                 dropout: float = 0.1, layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.multihead_attn = CrossAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, queries: Tensor, memory: Tensor) -> Tensor:
        """Decoded queries [B, K, d_model] from queries [B, K, d_model] and memory [B, N, d_model]."""
        return self.forward_with_attention(queries, memory, need_weights=False)[0]

    def forward_with_attention(self, queries: Tensor, memory: Tensor, need_weights: bool = True
                               ) -> tuple[Tensor, Tensor | None]:
        """The decoded queries and the attention weights [B, heads, K, N] of the queries over
        the memory (None unless `need_weights`)."""
        queries = self.norm1(queries + self.dropout1(queries))
        attended = self.multihead_attn(queries, memory)
        weights = attention_weights(self.multihead_attn, queries, memory) if need_weights else None
        queries = self.norm2(queries + self.dropout2(attended))
        hidden = self.linear2(self.dropout(F.relu(self.linear1(queries))))
        return self.norm3(queries + self.dropout3(hidden)), weights


def group_fully_connected(decoded: Tensor, weight: Tensor) -> Tensor:
    """Per-query linear maps [B, K, g] of decoded queries [B, K, D]: query k uses weight[k] [D, g],
    or every query uses the same [D, g] matrix when `weight` is 2-D (zero-shot)."""
    if weight.dim() == 2:
        return decoded @ weight
    # [K, B, D] @ [K, D, g] -> [K, B, g]: one batched matmul instead of a loop over queries
    return torch.matmul(decoded.transpose(0, 1), weight).transpose(0, 1)


class GroupDecoder(nn.Module):
    """The parameters the official head keeps under `decoder`: token projection
    (`embed_standart`), frozen random queries (`query_embed`), the decoder `layers` and the group
    FC (`duplicate_pooling` [K, D, g], `duplicate_pooling_bias` [class_num]). In zero-shot mode
    `query_embed` is a non-persistent buffer of word vectors and the group FC is one shared [D, 1]
    map with a scalar bias."""

    def __init__(self, class_num: int, initial_num_features: int, num_queries: int,
                 decoder_embedding: int, nheads: int, dim_feedforward: int, dropout: float,
                 num_layers: int, word_vectors: Tensor | None) -> None:
        super().__init__()
        self.embed_standart = nn.Linear(initial_num_features, decoder_embedding)
        self.layers = nn.ModuleList(
            MLDecoderLayer(decoder_embedding, nheads, dim_feedforward, dropout)
            for _ in range(num_layers))
        if word_vectors is None:
            self.query_embed = nn.Embedding(num_queries, decoder_embedding)
            self.query_embed.requires_grad_(False)  # random queries, never trained (as official)
            self.duplicate_factor = -(-class_num // num_queries)  # classes per query, rounded up
            self.duplicate_pooling = nn.Parameter(
                torch.empty(num_queries, decoder_embedding, self.duplicate_factor))
            self.duplicate_pooling_bias = nn.Parameter(torch.empty(class_num))
        else:
            self.register_buffer("query_embed", word_vectors, persistent=False)
            self.duplicate_factor = 1
            self.duplicate_pooling = nn.Parameter(torch.empty(decoder_embedding, 1))
            self.duplicate_pooling_bias = nn.Parameter(torch.empty(1))
        nn.init.xavier_normal_(self.duplicate_pooling)
        nn.init.zeros_(self.duplicate_pooling_bias)


class MLDecoderHead(nn.Module):
    """ML-Decoder head: features [B, C, H, W] (or tokens [B, N, C]) -> logits [B, class_num].

    `num_of_groups` queries (None or -1: min(100, class_num), the official default; per_class: one
    per class) each predict ceil(class_num / num_of_groups) classes: class c comes from query
    c // duplicate_factor. With `word_vectors` [class_num, word_dim] the head is zero-shot: the
    queries are the word vectors projected to `decoder_embedding` (Linear + ReLU,
    `wordvec_proj`), and any class with a word vector can be predicted (`set_word_vectors`)."""

    def __init__(self, class_num: int, initial_num_features: int, num_of_groups: int | str | None = None,
                 decoder_embedding: int = 768, nheads: int = 8, dim_feedforward: int = 2048,
                 dropout: float = 0.1, num_layers: int = 1,
                 word_vectors: Tensor | None = None) -> None:
        super().__init__()
        integer(class_num, "Arch.class_num", minimum=1, why=CLASS_NUM)
        integer(initial_num_features, "Arch.initial_num_features", minimum=1)
        integer(decoder_embedding, "Arch.decoder_embedding", minimum=1)
        integer(nheads, "Arch.nheads", minimum=1)
        integer(dim_feedforward, "Arch.dim_feedforward", minimum=1)
        integer(num_layers, "Arch.num_layers", minimum=1)
        number(dropout, "Arch.dropout", minimum=0.0, below=1.0)
        if decoder_embedding % nheads:
            raise ConfigError(f"Arch.decoder_embedding ({decoder_embedding}) must be divisible by "
                              f"Arch.nheads ({nheads})")
        self.class_num = class_num
        self.zero_shot = word_vectors is not None
        num_queries = resolve_num_queries(num_of_groups, class_num)
        if self.zero_shot:
            if num_of_groups not in (None, OFFICIAL_DEFAULT, PER_CLASS, class_num):
                raise ConfigError(f"Arch.num_of_groups ({num_of_groups}) does not apply to a "
                                  "zero-shot ML-Decoder: it uses one query per word vector; "
                                  "leave num_of_groups out")
            num_queries = class_num
        self.decoder = GroupDecoder(class_num, initial_num_features, num_queries, decoder_embedding,
                                    nheads, dim_feedforward, dropout, num_layers,
                                    self.checked_word_vectors(word_vectors))
        if self.zero_shot:
            word_dim = int(word_vectors.shape[1])
            self.wordvec_proj = (nn.Identity() if word_dim == decoder_embedding
                                 else nn.Linear(word_dim, decoder_embedding))

    def checked_word_vectors(self, word_vectors: Tensor | None) -> Tensor | None:
        """`word_vectors` as float32 [class_num, word_dim], or a ConfigError naming the shape."""
        if word_vectors is None:
            return None
        if word_vectors.dim() != 2 or word_vectors.shape[0] != self.class_num:
            raise ConfigError(f"Arch.word_vectors: expected one row per class, shape "
                              f"[{self.class_num}, word_dim], got {tuple(word_vectors.shape)}")
        return word_vectors.detach().to(torch.float32).clone()

    def set_word_vectors(self, word_vectors: Tensor) -> None:
        """Zero-shot only: predict the classes of `word_vectors` [n, word_dim] from now on (e.g.
        train on seen classes, evaluate on unseen ones)."""
        if not self.zero_shot:
            raise ConfigError("set_word_vectors needs a zero-shot ML-Decoder (Arch.word_vectors)")
        old = self.decoder.query_embed
        if word_vectors.dim() != 2 or word_vectors.shape[1] != old.shape[1]:
            raise ConfigError(f"word vectors must have shape [classes, {old.shape[1]}], "
                              f"got {tuple(word_vectors.shape)}")
        self.class_num = int(word_vectors.shape[0])
        self.decoder.query_embed = word_vectors.detach().to(old.device, torch.float32).clone()

    def queries(self) -> Tensor:
        """The decoder's input queries [K, decoder_embedding]."""
        if self.zero_shot:
            return F.relu(self.wordvec_proj(self.decoder.query_embed))
        return self.decoder.query_embed.weight

    def forward(self, features: Tensor) -> Tensor:
        """Logits [B, class_num] from a feature map [B, C, H, W] or tokens [B, N, C]."""
        return self.decode(features, attention_layer=None)[0]

    def forward_with_maps(self, features: Tensor, layer: int = -1, head: int | None = None
                          ) -> tuple[Tensor, Tensor]:
        """`forward`'s logits and, per class, the attention over the feature map [B, class_num,
        h, w] of the query that predicts it (with group decoding, its group's query) in decoder
        layer `layer`, the mean over the heads or head `head` alone; each map sums to 1."""
        if features.dim() != 4:
            raise ConfigError(f"ML-Decoder attention maps need a feature map [B, C, h, w], got "
                              f"tokens of shape {tuple(features.shape)}")
        logits, weights = self.decode(features, check_layer(layer, len(self.decoder.layers),
                                                            "the ML-Decoder"))
        maps = attention_maps(weights, head, features.shape[-2:])
        query_of_class = torch.arange(self.class_num, device=maps.device) // self.decoder.duplicate_factor
        return logits, maps.index_select(1, query_of_class)

    def decode(self, features: Tensor, attention_layer: int | None) -> tuple[Tensor, Tensor | None]:
        """Logits and the attention weights [B, heads, K, N] of decoder layer `attention_layer`
        (an index in 0..num_layers-1; None: not computed)."""
        tokens = features.flatten(2).transpose(1, 2) if features.dim() == 4 else features
        memory = F.relu(self.decoder.embed_standart(tokens))
        queries = self.queries()
        decoded = queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        weights = None
        for index, layer in enumerate(self.decoder.layers):
            if index == attention_layer:
                decoded, weights = layer.forward_with_attention(decoded, memory)
            else:
                decoded = layer(decoded, memory)
        grouped = group_fully_connected(decoded, self.decoder.duplicate_pooling)
        logits = grouped.flatten(1)[:, :self.class_num]
        return logits + self.decoder.duplicate_pooling_bias, weights


def resolve_num_queries(num_of_groups: int | str | None, class_num: int) -> int:
    """Number of queries: None or -1 -> min(100, class_num) (the official code's -1), per_class ->
    class_num, otherwise num_of_groups, which must be in 1..class_num."""
    if num_of_groups is None or (num_of_groups == OFFICIAL_DEFAULT and not isinstance(num_of_groups, bool)):
        return min(DEFAULT_MAX_GROUPS, class_num)
    if num_of_groups == PER_CLASS:
        return class_num
    integer(num_of_groups, "Arch.num_of_groups", minimum=1,
            why=f"or -1: min({DEFAULT_MAX_GROUPS}, class_num) as the official code; {PER_CLASS}: "
                f"one query per class")
    if num_of_groups > class_num:
        raise ConfigError(f"Arch.num_of_groups ({num_of_groups}) cannot exceed class_num "
                          f"({class_num}); use at most {class_num}, or {PER_CLASS} for one query "
                          f"per class")
    return num_of_groups


@ARCHS.register
class MLDecoder(nn.Module):
    """Backbone -> ML-Decoder head (`head`, official key names). `initial_num_features`, when
    given, must equal the backbone's channel count; `word_vectors` (path to a .npy or .pt file
    with a [class_num, word_dim] array) makes the head zero-shot."""

    def __init__(self, class_num: int, backbone: dict, num_of_groups: int | str | None = None,
                 decoder_embedding: int = 768, initial_num_features: int | None = None,
                 nheads: int = 8, dim_feedforward: int = 2048, dropout: float = 0.1,
                 num_layers: int = 1, word_vectors: str | None = None) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone, where="Arch.backbone")
        channels = int(self.backbone.num_channels)
        if initial_num_features is not None and initial_num_features != channels:
            raise ConfigError(f"Arch.initial_num_features is {initial_num_features!r} but backbone "
                              f"{backbone.get('name')!r} gives {channels} channels; set it to "
                              f"{channels} or leave it out")
        vectors = None if word_vectors is None else load_word_vectors(Path(word_vectors))
        self.head = MLDecoderHead(class_num, channels, num_of_groups, decoder_embedding, nheads,
                                  dim_feedforward, dropout, num_layers, vectors)

    @property
    def class_num(self) -> int:
        """Number of classes predicted (a zero-shot head changes it with set_word_vectors)."""
        return self.head.class_num

    def forward(self, images: Tensor) -> Tensor:
        """Logits [B, class_num] for images [B, 3, H, W]."""
        return self.head(self.backbone(images))

    def forward_with_maps(self, images: Tensor, layer: int = -1, head: int | None = None
                          ) -> tuple[Tensor, Tensor]:
        """`forward`'s logits and per-class attention maps [B, class_num, h, w] (see
        MLDecoderHead.forward_with_maps)."""
        return self.head.forward_with_maps(self.backbone(images), layer, head)
