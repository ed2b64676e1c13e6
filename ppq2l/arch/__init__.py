"""Model architectures; importing this package registers the backbones and architectures."""
from __future__ import annotations

from torch import nn

from ppq2l.arch import backbone, pooled, position_encoding, query2label, transformer
from ppq2l.arch import backbone_torchvision, cvt  # registers TorchvisionResNet and CvT
from ppq2l.arch.backbone import TimmBackbone, build_backbone
from ppq2l.arch.ml_decoder import MLDecoder, MLDecoderHead
from ppq2l.arch.ml_decoder_paddleclas import from_paddleclas_spelling
from ppq2l.arch.pooled import PooledClassifier
from ppq2l.arch.position_encoding import PositionEmbeddingSine
from ppq2l.arch.query2label import GroupWiseLinear, Query2Label
from ppq2l.arch.transformer import Transformer
from ppq2l.errors import ConfigError
from ppq2l.registry import ARCHS

__all__ = ["build_model", "build_backbone", "TimmBackbone", "PositionEmbeddingSine", "Transformer",
           "GroupWiseLinear", "Query2Label", "PooledClassifier", "MLDecoder", "MLDecoderHead",
           "backbone", "pooled", "position_encoding", "query2label", "transformer"]


def build_model(arch_cfg: dict) -> nn.Module:
    """Build the model described by the config's `Arch` section:
    {name, class_num, backbone: {...}, <architecture keywords>}."""
    if not isinstance(arch_cfg, dict):
        raise ConfigError("Arch must be a mapping with name, class_num and backbone, "
                          f"got {arch_cfg!r}")
    arch_cfg = dict(from_paddleclas_spelling(arch_cfg))
    name = arch_cfg.pop("name", None)
    if name is None:
        raise ConfigError("Arch needs a 'name'; registered architectures: "
                          f"{', '.join(ARCHS.names())}")
    if arch_cfg.get("class_num") is None:
        raise ConfigError("Arch needs 'class_num': the number of classes the model predicts")
    return ARCHS.build(name, arch_cfg, where="Arch")
