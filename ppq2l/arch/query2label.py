"""Query2Label: one learned query per class attends to the backbone's feature map through a
transformer; a per-class linear layer turns each decoded query into that class's logit."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ppq2l.arch.backbone import build_backbone
from ppq2l.arch.position_encoding import PositionEmbeddingSine
from ppq2l.arch.transformer import Transformer, attention_maps
from ppq2l.checks import choice, integer, number
from ppq2l.errors import ConfigError
from ppq2l.registry import ARCHS

POSITION_EMBEDDINGS = ("sine",)
CLASS_NUM = "the number of classes the model predicts"


class GroupWiseLinear(nn.Module):
    """A separate linear map per class: out[b, k] = sum_d W[0, k, d] * x[b, k, d] + b[0, k]."""

    def __init__(self, num_class: int, hidden_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.num_class = num_class
        self.hidden_dim = hidden_dim
        self.W = nn.Parameter(torch.empty(1, num_class, hidden_dim))
        self.b = nn.Parameter(torch.empty(1, num_class)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(hidden_dim), 1/sqrt(hidden_dim)) for weights and biases."""
        bound = 1.0 / math.sqrt(self.hidden_dim)
        nn.init.uniform_(self.W, -bound, bound)
        if self.b is not None:
            nn.init.uniform_(self.b, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """Logits [B, K] from per-class features [B, K, hidden_dim]."""
        logits = torch.einsum("bkd,kd->bk", x, self.W[0])
        return logits if self.b is None else logits + self.b


@ARCHS.register
class Query2Label(nn.Module):
    """Query2Label (Liu et al., 2021) on any backbone: features (optionally projected to
    hidden_dim) plus sine positions -> transformer with `class_num` queries -> GroupWiseLinear."""

    def __init__(self, class_num: int, backbone: dict, hidden_dim: int = 2048,
                 enc_layers: int = 1, dec_layers: int = 2, nheads: int = 4,
                 dim_feedforward: int = 8192, dropout: float = 0.1, pre_norm: bool = False,
                 keep_input_proj: bool = False, keep_decoder_self_attn: bool = False,
                 position_embedding: str = "sine") -> None:
        super().__init__()
        integer(class_num, "Arch.class_num", minimum=1, why=CLASS_NUM)
        integer(hidden_dim, "Arch.hidden_dim", minimum=4)
        integer(enc_layers, "Arch.enc_layers", minimum=0)
        integer(dec_layers, "Arch.dec_layers", minimum=1)
        integer(nheads, "Arch.nheads", minimum=1)
        integer(dim_feedforward, "Arch.dim_feedforward", minimum=1)
        number(dropout, "Arch.dropout", minimum=0.0, below=1.0)
        if hidden_dim % 4:
            # Half the width encodes rows, half columns, each as sin/cos pairs.
            raise ConfigError(f"Arch.hidden_dim must be a multiple of 4 for the sine position "
                              f"encoding, got {hidden_dim}")
        if hidden_dim % nheads:
            raise ConfigError(f"Arch.hidden_dim ({hidden_dim}) must be divisible by "
                              f"Arch.nheads ({nheads})")
        choice(position_embedding, "Arch.position_embedding", POSITION_EMBEDDINGS)
        self.class_num = class_num
        self.backbone = build_backbone(backbone, where="Arch.backbone")
        channels = int(self.backbone.num_channels)
        if not keep_input_proj and channels != hidden_dim:
            raise ConfigError(
                f"Arch: the backbone gives {channels} channels but hidden_dim is {hidden_dim}; "
                f"set keep_input_proj: true (a 1x1 conv from {channels} to {hidden_dim}) or "
                f"hidden_dim: {channels}")
        self.transformer = Transformer(
            d_model=hidden_dim, nhead=nheads, num_encoder_layers=enc_layers,
            num_decoder_layers=dec_layers, dim_feedforward=dim_feedforward, dropout=dropout,
            normalize_before=pre_norm, return_intermediate_dec=False,
            rm_self_attn_dec=not keep_decoder_self_attn,
            rm_first_self_attn=not keep_decoder_self_attn)
        self.position_embedding = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.input_proj = (nn.Conv2d(channels, hidden_dim, kernel_size=1) if keep_input_proj
                           else nn.Identity())
        self.query_embed = nn.Embedding(class_num, hidden_dim)
        self.fc = GroupWiseLinear(class_num, hidden_dim, bias=True)

    def forward(self, images: Tensor) -> Tensor:
        """Logits [B, class_num] for images [B, 3, H, W]."""
        features = self.input_proj(self.backbone(images))
        positions = self.position_embedding(features)
        decoded, _ = self.transformer(features, self.query_embed.weight, positions)
        return self.fc(decoded[-1])

    def forward_with_maps(self, images: Tensor, layer: int = -1, head: int | None = None
                          ) -> tuple[Tensor, Tensor]:
        """`forward`'s logits and, per label query, its cross-attention over the feature map
        [B, class_num, h, w] in decoder layer `layer` (-1: the last), the mean over the heads
        or head `head` alone; each map sums to 1."""
        features = self.input_proj(self.backbone(images))
        positions = self.position_embedding(features)
        decoded, _, weights = self.transformer.forward_with_attention(
            features, self.query_embed.weight, positions, attention_layer=layer)
        return self.fc(decoded[-1]), attention_maps(weights, head, features.shape[-2:])

