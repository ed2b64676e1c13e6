"""Model architectures; importing this package registers the backbones and architectures."""
from __future__ import annotations

from typing import Any

from torch import nn

from ppq2l.arch import (  # registers TorchvisionResNet and CvT
    backbone,
    backbone_torchvision,
    cvt,
    pooled,
    position_encoding,
    query2label,
    transformer,
)
from ppq2l.arch.backbone import TimmBackbone, build_backbone
from ppq2l.arch.ml_decoder import MLDecoder, MLDecoderHead
from ppq2l.arch.ml_decoder_paddleclas import from_paddleclas_spelling
from ppq2l.arch.pooled import PooledClassifier
from ppq2l.arch.position_encoding import PositionEmbeddingSine
from ppq2l.arch.query2label import GroupWiseLinear, Query2Label
from ppq2l.arch.transformer import Transformer
from ppq2l.registry import ARCHS

__all__ = ["build_model", "build_backbone", "TimmBackbone", "PositionEmbeddingSine", "Transformer",
           "GroupWiseLinear", "Query2Label", "PooledClassifier", "MLDecoder", "MLDecoderHead",
           "backbone", "backbone_torchvision", "cvt", "pooled", "position_encoding", "query2label",
           "transformer"]


def build_model(arch_cfg: Any) -> nn.Module:
    """Build the model described by the config's `Arch` section:
    {name, class_num, backbone: {...}, <architecture keywords>} (or PaddleClas's spelling)."""
    return ARCHS.build_mapping(from_paddleclas_spelling(arch_cfg), "Arch",
                               example="{name: Query2Label, class_num: 80, backbone: {name: resnet101}}")
