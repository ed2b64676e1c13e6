"""PaddleClas's way of asking for an ML-Decoder, translated to this project's Arch spelling:
    Arch: {name: ResNet50, class_num: 80, pretrained: true, use_ml_decoder: true,
           MLDecoder: {query_num: 80, in_channels: 2048}}
becomes {name: MLDecoder, class_num: 80, backbone: {name: resnet50, pretrained: true},
num_of_groups: 80, initial_num_features: 2048}; without use_ml_decoder it is the pooled baseline."""
from __future__ import annotations

from typing import Any

from ppq2l.checks import did_you_mean, flag
from ppq2l.errors import ConfigError

# PaddleClas backbone names and the timm models with the same architecture.
PADDLECLAS_BACKBONES = {"ResNet18": "resnet18", "ResNet34": "resnet34", "ResNet50": "resnet50",
                        "ResNet101": "resnet101", "ResNet152": "resnet152"}
ARCH_KEYS = ("name", "class_num", "pretrained", "use_ml_decoder", "MLDecoder")
# PaddleClas MLDecoder keyword -> MLDecoder architecture keyword.
RENAMED_KEYS = {"query_num": "num_of_groups", "in_channels": "initial_num_features",
                "in_chans": "initial_num_features", "embed_dim": "decoder_embedding",
                "depth": "num_layers", "num_heads": "nheads", "mlp_hidden_dim": "dim_feedforward",
                "dropout": "dropout"}
# Keywords whose only supported value is the one this implementation has built in.
FIXED_KEYS = {"activation": "relu", "freeze_query_embed": True, "remove_self_attn": True}
# Keywords that say which layers of a Paddle backbone the head replaces; a timm backbone here is
# built without pooling and classifier, so they have nothing to act on.
PLACEMENT_KEYS = ("remove_layers", "replace_layer")


def is_paddleclas_spelling(arch_cfg: dict) -> bool:
    """Whether `arch_cfg` names a PaddleClas backbone or carries PaddleClas's ML-Decoder keys."""
    return isinstance(arch_cfg, dict) and (arch_cfg.get("name") in PADDLECLAS_BACKBONES
                                           or "use_ml_decoder" in arch_cfg or "MLDecoder" in arch_cfg)


def from_paddleclas_spelling(arch_cfg: Any) -> Any:
    """`arch_cfg` in this project's spelling; configs already written that way pass unchanged."""
    if not is_paddleclas_spelling(arch_cfg):
        return arch_cfg
    name = arch_cfg.get("name")
    if name not in PADDLECLAS_BACKBONES:
        raise ConfigError(f"Arch: use_ml_decoder/MLDecoder (PaddleClas spelling) need a PaddleClas "
                          f"backbone name, got {name!r}.{did_you_mean(name, PADDLECLAS_BACKBONES)} "
                          f"Supported: "
                          f"{', '.join(PADDLECLAS_BACKBONES)}; or write Arch as {{name: MLDecoder, "
                          f"backbone: {{name: <timm model>}}, ...}}")
    unknown = [key for key in arch_cfg if key not in ARCH_KEYS]
    if unknown:
        raise ConfigError(f"Arch (PaddleClas spelling, {name}): unknown keys {unknown}; "
                          f"accepted: {', '.join(ARCH_KEYS)}")
    use_ml_decoder = flag(arch_cfg.get("use_ml_decoder", False), "Arch.use_ml_decoder")
    backbone = {"name": PADDLECLAS_BACKBONES[name], "pretrained": arch_cfg.get("pretrained", False)}
    translated: dict[str, Any] = {"class_num": arch_cfg.get("class_num"), "backbone": backbone}
    head_cfg = arch_cfg.get("MLDecoder")
    if not use_ml_decoder:
        if head_cfg is not None:
            raise ConfigError("Arch.MLDecoder is set but Arch.use_ml_decoder is not true; set "
                              "use_ml_decoder: true or remove the MLDecoder section")
        return {"name": "PooledClassifier", **translated}
    return {"name": "MLDecoder", **translated,
            **translate_head_keywords(head_cfg or {}, translated["class_num"])}


def translate_head_keywords(head_cfg: Any, class_num: Any) -> dict:
    """PaddleClas's `MLDecoder` keywords as MLDecoder architecture keywords."""
    where = "Arch.MLDecoder"
    if not isinstance(head_cfg, dict):
        raise ConfigError(f"{where} must be a mapping like {{query_num: 80, in_channels: 2048}}, "
                          f"got {head_cfg!r}")
    keywords: dict[str, Any] = {}
    for key, value in head_cfg.items():
        if key in RENAMED_KEYS:
            target = RENAMED_KEYS[key]
            if target in keywords and keywords[target] != value:
                raise ConfigError(f"{where}: in_channels and in_chans disagree "
                                  f"({keywords[target]!r} vs {value!r})")
            keywords[target] = value
        elif key in FIXED_KEYS:
            if value != FIXED_KEYS[key]:
                raise ConfigError(f"{where}.{key}: only {FIXED_KEYS[key]!r} is supported "
                                  f"(the official ML-Decoder), got {value!r}")
        elif key == "class_num":
            if value != class_num:
                raise ConfigError(f"{where}.class_num ({value!r}) differs from Arch.class_num "
                                  f"({class_num!r}); remove it or make them equal")
        elif key not in PLACEMENT_KEYS:
            accepted = [*RENAMED_KEYS, *FIXED_KEYS, "class_num", *PLACEMENT_KEYS]
            raise ConfigError(f"{where}: unknown key {key!r}.{did_you_mean(key, accepted)} "
                              f"Accepted: {', '.join(accepted)}")
    return keywords
