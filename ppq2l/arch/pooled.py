"""The pooled baseline (as in ASL): global average pooling of the backbone's feature map and one
linear layer with an output per class."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ppq2l.arch.backbone import build_backbone
from ppq2l.arch.query2label import CLASS_NUM
from ppq2l.checks import integer, number
from ppq2l.errors import ConfigError
from ppq2l.registry import ARCHS


@ARCHS.register
class PooledClassifier(nn.Module):
    """Backbone -> global average pool -> dropout -> Linear(num_channels, class_num)."""

    def __init__(self, class_num: int, backbone: dict, dropout: float = 0.0) -> None:
        super().__init__()
        integer(class_num, "Arch.class_num", minimum=1, why=CLASS_NUM)
        number(dropout, "Arch.dropout", minimum=0.0, below=1.0)
        self.class_num = class_num
        self.backbone = build_backbone(backbone, where="Arch.backbone")
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(int(self.backbone.num_channels), class_num)

    def forward(self, images: Tensor) -> Tensor:
        """Logits [B, class_num] for images [B, 3, H, W]."""
        pooled = self.backbone(images).mean(dim=(2, 3))
        return self.fc(self.dropout(pooled))

    def forward_with_maps(self, images: Tensor, layer: int = -1, head: int | None = None
                          ) -> tuple[Tensor, Tensor]:
        """`forward`'s logits and class activation maps [B, class_num, h, w]: each class's
        classifier weights applied at every position of the feature map, negatives set to 0."""
        if layer != -1 or head is not None:
            raise ConfigError(f"PooledClassifier maps are class activation maps, one per class; "
                              f"layer and head apply to attention heads (got layer={layer!r}, "
                              f"head={head!r}): leave them at -1 and null")
        features = self.backbone(images)
        logits = self.fc(self.dropout(features.mean(dim=(2, 3))))
        maps = torch.einsum("bdhw,cd->bchw", features, self.fc.weight)
        return logits, torch.relu(maps)
