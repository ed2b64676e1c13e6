"""Image backbones: a timm model without its classifier that returns the last feature map (NCHW),
plus `build_backbone`, which turns an `Arch.backbone` config entry into one."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn

from ppq2l.errors import CheckpointError, ConfigError
from ppq2l.registry import BACKBONES, closest

# Top-level names timm models use for their classifier; a weight file for the full model carries
# them, the headless backbone does not.
CLASSIFIER_PREFIXES = ("fc", "head", "classifier", "last_linear")
# Names timm accepts that point outside its own model table (downloads or local folders).
EXTERNAL_NAME_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")
# Error messages list this many keys of each kind; the counts tell how many there are in all.
KEYS_SHOWN = 10


@BACKBONES.register
class TimmBackbone(nn.Module):
    """A timm model without pooling and classifier; `forward` returns its last feature map as
    [B, num_channels, H/stride, W/stride]. `pretrained`: False (random), True (timm hub download,
    needs network) or a local weight file path."""

    def __init__(self, name: str, pretrained: bool | str = False, out_stride: int = 32,
                 **timm_kwargs: Any) -> None:
        super().__init__()
        check_timm_name(name)
        pretrained = check_pretrained(pretrained, name)
        if isinstance(out_stride, bool) or not isinstance(out_stride, int) or out_stride < 1:
            raise ConfigError(f"backbone {name!r}: out_stride must be a positive integer, "
                              f"got {out_stride!r}")
        self.name = name
        self.body = create_headless_timm_model(name, pretrained is True, timm_kwargs)
        self.num_channels = int(self.body.num_features)
        self.stride = model_stride(self.body, name, out_stride)
        fmt = getattr(self.body, "output_fmt", "NCHW")
        self.output_fmt = str(getattr(fmt, "value", fmt))
        if self.output_fmt not in ("NCHW", "NHWC"):
            raise ConfigError(f"backbone {name!r} returns features in layout {self.output_fmt!r}; "
                              "only NCHW and NHWC feature maps are supported")
        if isinstance(pretrained, str):
            load_local_weights(self.body, pretrained, name)

    def forward(self, images: Tensor) -> Tensor:
        """Feature map [B, num_channels, h, w] of images [B, 3, H, W]."""
        features = self.body.forward_features(images)
        if features.dim() != 4:
            raise ConfigError(
                f"backbone {self.name!r} returns a {features.dim()}-D output "
                f"{tuple(features.shape)} (a token sequence, as ViT-style models give); only "
                "models with a 2-D feature map (CNNs, Swin-style) are supported as backbones")
        if self.output_fmt == "NHWC":
            features = features.permute(0, 3, 1, 2)
        return features


def build_backbone(cfg: dict, where: str = "Arch.backbone") -> nn.Module:
    """Build the backbone described by `cfg` = {name: <registered backbone or timm model name>,
    pretrained: ..., <keywords>}. The result has `.num_channels` and `.stride`."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where} must be a mapping like {{name: resnet50, pretrained: false}}, "
                          f"got {cfg!r}")
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where} needs a 'name': a timm model (e.g. resnet50) or one of the "
                          f"registered backbones ({', '.join(BACKBONES.names())})")
    try:
        if name in BACKBONES and name != TimmBackbone.__name__:
            return BACKBONES.build(name, cfg, where=where)
        return TimmBackbone(name, **cfg)
    except ConfigError as error:
        if str(error).startswith(where):
            raise
        raise ConfigError(f"{where}: {error}") from error


def check_timm_name(name: str) -> None:
    """Raise a ConfigError with close matches when `name` is not a timm model."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"backbone name must be a non-empty string, got {name!r}")
    if name.startswith(EXTERNAL_NAME_PREFIXES):
        return
    architecture = name.split(".", 1)[0]  # "resnet50.a1_in1k" names a pretrained tag of resnet50
    if timm.is_model(architecture):
        return
    candidates = list(BACKBONES.names()) + timm.list_models()
    near = closest(architecture, candidates, limit=5)
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    raise ConfigError(f"unknown backbone {name!r}: neither a registered backbone "
                      f"({', '.join(BACKBONES.names())}) nor a timm model.{hint}")


def check_pretrained(pretrained: Any, name: str) -> bool | str:
    """Return `pretrained` if it is a bool or a non-empty path string, else raise a ConfigError."""
    if isinstance(pretrained, bool):
        return pretrained
    if isinstance(pretrained, (str, os.PathLike)) and str(pretrained).strip():
        return str(pretrained)
    raise ConfigError(f"backbone {name!r}: pretrained must be false, true (timm hub download) or a "
                      f"path to a weight file, got {pretrained!r}")


def create_headless_timm_model(name: str, pretrained: bool, timm_kwargs: dict) -> nn.Module:
    """`timm.create_model` without classifier and pooling; keyword mistakes become ConfigErrors."""
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool="",
                                 **timm_kwargs)
    except TypeError as error:
        if not timm_kwargs:
            raise
        # timm passes unknown keywords on to the model constructor, which rejects them.
        raise ConfigError(f"backbone {name!r}: timm rejected the keywords "
                          f"{sorted(timm_kwargs)} ({error}). Remove them or use ones the "
                          f"{name} constructor accepts.") from error


def model_stride(model: nn.Module, name: str, out_stride: int) -> int:
    """The total downsampling of `model`'s last feature map; it must equal `out_stride`."""
    feature_info = getattr(model, "feature_info", None)
    if not feature_info:
        return out_stride  # no metadata to check against: trust the config
    stride = int(feature_info[-1]["reduction"])
    if stride != out_stride:
        raise ConfigError(
            f"backbone {name!r} gives features at stride {stride}, but out_stride is {out_stride}. "
            f"Set out_stride: {stride}, or ask timm for another stride with output_stride: N "
            "(models that support dilation).")
    return stride


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Tensors of a weight file: a plain state dict or one stored under 'state_dict' or 'model',
    with a DataParallel 'module.' prefix removed."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise CheckpointError(f"backbone weight file {str(path)!r} does not exist")
    try:
        content = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # the unpickler fails on corrupt bytes with assorted error types
        raise CheckpointError(f"cannot read backbone weight file {str(path)!r}: {error}") from error
    if isinstance(content, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(content.get(wrapper), dict):
                content = content[wrapper]
                break
    if not isinstance(content, dict) or not content:
        raise CheckpointError(f"backbone weight file {str(path)!r} holds no state dict "
                              f"(found {type(content).__name__})")
    not_tensors = [key for key, value in content.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise CheckpointError(f"backbone weight file {str(path)!r} has non-tensor entries "
                              f"{list_keys(not_tensors)}; expected a state dict of tensors")
    keys = list(content)
    if all(isinstance(key, str) and key.startswith("module.") for key in keys):
        content = {key[len("module."):]: value for key, value in content.items()}
    return dict(content)


def load_local_weights(model: nn.Module, path: str | os.PathLike, name: str) -> None:
    """Load a weight file into the headless `model`: classifier weights are dropped, everything
    else must match exactly (names and shapes) or a CheckpointError lists the differences."""
    state = read_state_dict(path)
    expected = model.state_dict()
    state = {key: value for key, value in state.items()
             if key in expected or not key.startswith(tuple(p + "." for p in CLASSIFIER_PREFIXES))}
    # BatchNorm step counters are not weights; files from frozen-BN models lack them.
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [f"{key} {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
                  for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or unexpected or mismatched:
        problems = [f"{label} ({len(keys)}): {list_keys(keys)}" for label, keys in
                    (("missing", missing), ("unexpected", unexpected),
                     ("shape mismatch", mismatched)) if keys]
        raise CheckpointError(f"backbone weight file {str(path)!r} does not fit timm model "
                              f"{name!r}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def list_keys(keys: list[str]) -> str:
    """The first KEYS_SHOWN keys, with '...' when there are more."""
    shown = ", ".join(keys[:KEYS_SHOWN])
    return shown + (", ..." if len(keys) > KEYS_SHOWN else "")
