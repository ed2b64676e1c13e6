"""Image backbones: a timm model without its classifier that returns the last feature map (NCHW),
plus `build_backbone`, which turns an `Arch.backbone` config entry into one. CNNs give NCHW maps,
Swin-style models NHWC maps and ViT-style models (ViT, DeiT, EVA) token sequences; all three come
out as NCHW."""
from __future__ import annotations

import os
from typing import Any

import timm
import torch
from torch import Tensor, nn

from ppq2l.checks import did_you_mean, integer
from ppq2l.errors import CheckpointError, ConfigError
from ppq2l.registry import BACKBONES, located

# Top-level names timm models use for their classifier; a weight file for the full model carries
# them, the headless backbone does not.
CLASSIFIER_PREFIXES = ("fc", "head", "classifier", "last_linear")
CLASSIFIER_KEYS = tuple(prefix + "." for prefix in CLASSIFIER_PREFIXES)
# Names timm accepts that point outside its own model table (downloads or local folders).
EXTERNAL_NAME_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")


class TimmBackbone(nn.Module):
    """A timm model without pooling and classifier; `forward` returns its last feature map as
    [B, num_channels, H/stride, W/stride]. `pretrained`: False (random), True (timm hub download,
    needs network) or a local weight file path. `frozen_stages`: -1 trains everything, 0 freezes
    the stem, k also the first k stages (timm's coarse parameter groups, `group_matcher`); the
    official Query2Label freezes its TResNets' stem and layer1 (1). Not registered:
    `build_backbone` builds every name that is not a registered backbone as a timm model."""

    def __init__(self, name: str, pretrained: bool | str = False, out_stride: int | None = None,
                 frozen_stages: int = -1, **timm_kwargs: Any) -> None:
        super().__init__()
        check_timm_name(name)
        pretrained = check_pretrained(pretrained, name)
        integer(out_stride, "out_stride", minimum=1, allow_none=True,
                why="the total downsampling", where=f"backbone {name!r}")
        self.name = name
        self.body = create_headless_timm_model(name, pretrained is True, timm_kwargs)
        self.num_channels = int(self.body.num_features)
        self.stride = model_stride(self.body, name, out_stride)
        fmt = getattr(self.body, "output_fmt", "NCHW")
        self.output_fmt = str(getattr(fmt, "value", fmt))
        if self.output_fmt not in ("NCHW", "NHWC", "NLC"):
            raise ConfigError(f"backbone {name!r} returns features in layout {self.output_fmt!r}; "
                              "only NCHW and NHWC feature maps and NLC token sequences are "
                              "supported")
        if isinstance(pretrained, str):
            load_local_weights(self.body, pretrained, name)
        if timm_kwargs and not hasattr(self.body, "patch_embed"):
            probe_keywords(self.body, name, timm_kwargs)
        self.frozen_parameters = freeze_stages(self.body, frozen_stages, name)

    def forward(self, images: Tensor) -> Tensor:
        """Feature map [B, num_channels, h, w] of images [B, 3, H, W]."""
        if features_are_tokens(self.body):
            check_token_model_input(self.body, self.name, images.shape[-2:])
        features = self.body.forward_features(images)
        if features.dim() == 3:
            return tokens_to_map(features, self.body, self.name, images.shape[-2:])
        if features.dim() != 4:
            raise ConfigError(f"backbone {self.name!r} returns a {features.dim()}-D output "
                              f"{tuple(features.shape)}; expected a feature map or tokens")
        if self.output_fmt == "NHWC":
            features = features.permute(0, 3, 1, 2)
        return features


def stage_groups(model: nn.Module, name: str) -> list[list[str]]:
    """The parameter names of `model` by stage, stem first: timm's coarse `group_matcher` groups."""
    from timm.models import group_parameters

    matcher = getattr(model, "group_matcher", None)
    if matcher is None:
        raise ConfigError(f"backbone {name!r}: timm defines no stages for it (no group_matcher), "
                          f"so frozen_stages cannot say what to freeze; leave it at -1")
    groups = group_parameters(model, matcher(coarse=True))
    return [groups[key] for key in sorted(groups)]


def freeze_stages(model: nn.Module, frozen_stages: Any, name: str) -> tuple[str, ...]:
    """Stop gradients to the stem and the first `frozen_stages` stages of `model` (-1: none, 0:
    the stem); returns the names of the parameters frozen. Statistics of norm layers still
    update in training, as in the official code, which only sets requires_grad."""
    why, where = "-1 trains everything, 0 freezes the stem, k also the first k stages", f"backbone {name!r}"
    integer(frozen_stages, "frozen_stages", minimum=-1, why=why, where=where)
    groups = stage_groups(model, name) if frozen_stages != -1 else []
    integer(frozen_stages, "frozen_stages", minimum=-1, maximum=max(len(groups) - 1, -1),
            why=f"{why}; {name} has {max(len(groups) - 1, 0)}", where=where)
    frozen = tuple(key for group in groups[:frozen_stages + 1] for key in group)
    parameters = dict(model.named_parameters())
    for key in frozen:
        parameters[key].requires_grad_(False)
    return frozen


# Side of the small image that checks a keyword-customised CNN can run (a few milliseconds).
PROBE_SIZE = 64


def probe_keywords(model: nn.Module, name: str, timm_kwargs: dict) -> None:
    """Run `model` once on a small image: timm builds some inconsistent keyword sets (a ResNet with
    two `channels` for four stages) that fail only in forward, which would otherwise surface as
    an AttributeError at the first training step."""
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval().forward_features(torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE))
    except (AttributeError, IndexError, TypeError, ValueError, RuntimeError) as error:
        if isinstance(error, torch.OutOfMemoryError):
            raise
        details = ", ".join(f"{key}={value!r}" for key, value in timm_kwargs.items())
        raise ConfigError(f"backbone {name!r} built with {details} cannot run ({type(error).__name__}: "
                          f"{' '.join(str(error).split())[:200]}); these keywords do not fit the "
                          f"model") from None
    finally:
        model.train(was_training)


def features_are_tokens(model: nn.Module) -> bool:
    """True for ViT-style models whose forward_features gives [B, prefix + h*w, C] tokens."""
    return hasattr(model, "num_prefix_tokens") and hasattr(model, "patch_embed")


def token_grid(model: nn.Module, size: tuple[int, int]) -> tuple[int, int]:
    """The patch grid (rows, columns) a ViT-style `model` makes of an input of `size` (H, W)."""
    patch_h, patch_w = model.patch_embed.patch_size
    height, width = int(size[0]), int(size[1])
    if getattr(model.patch_embed, "dynamic_img_pad", False):
        return -(-height // patch_h), -(-width // patch_w)
    return height // patch_h, width // patch_w


def check_token_model_input(model: nn.Module, name: str, size: tuple[int, int]) -> None:
    """A ViT-style model built for one input size (no dynamic_img_size) rejects others; say how
    to build it for `size` instead of letting timm fail with an assertion."""
    fixed = getattr(model.patch_embed, "img_size", None)
    if getattr(model, "dynamic_img_size", False) or fixed is None:
        return
    if tuple(int(side) for side in size) != tuple(fixed):
        raise ConfigError(
            f"backbone {name!r} was built for {fixed[0]}x{fixed[1]} inputs but got "
            f"{int(size[0])}x{int(size[1])}; set Arch.backbone.dynamic_img_size: True (any size, "
            f"position embeddings interpolated) or img_size: [{int(size[0])}, {int(size[1])}]")


def tokens_to_map(tokens: Tensor, model: nn.Module, name: str, size: tuple[int, int]) -> Tensor:
    """[B, prefix + h*w, C] tokens of a ViT-style model -> [B, C, h, w]: class, register and
    distillation tokens (timm's num_prefix_tokens) are dropped, patch tokens laid on the grid."""
    prefix = int(getattr(model, "num_prefix_tokens", 0))
    rows, cols = token_grid(model, size)
    patches = tokens[:, prefix:]
    if patches.shape[1] != rows * cols:
        raise ConfigError(f"backbone {name!r}: {patches.shape[1]} patch tokens for an input of "
                          f"{int(size[0])}x{int(size[1])}, expected a {rows}x{cols} grid")
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], rows, cols)


def build_backbone(cfg: Any, where: str = "Arch.backbone") -> nn.Module:
    """Build the backbone described by `cfg` = {name: <registered backbone or timm model name>,
    pretrained: ..., <keywords>}. The result has `.num_channels` and `.stride`."""
    name, kwargs = BACKBONES.parse_mapping(
        cfg, where, example="{name: resnet50, pretrained: false} (a timm model name or a "
        "registered backbone)", registered_only=False)
    if name in BACKBONES:
        return BACKBONES.build(name, kwargs, where)
    try:
        return TimmBackbone(name, **kwargs)
    except ConfigError as error:
        raise located(error, where) from error


def check_timm_name(name: str) -> None:
    """Raise a ConfigError with close matches when `name` is not a timm model."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"backbone name must be a non-empty string, got {name!r}")
    if name.startswith(EXTERNAL_NAME_PREFIXES):
        return
    architecture = name.split(".", 1)[0]  # "resnet50.a1_in1k" names a pretrained tag of resnet50
    if timm.is_model(architecture):
        return
    hint = did_you_mean(architecture, BACKBONES.names() + timm.list_models(), limit=5)
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
    except OSError as error:  # urllib, huggingface_hub and file errors all derive from OSError
        if not pretrained:
            raise
        raise download_failed(name, "the Hugging Face hub (timm)", error) from None
    except TypeError as error:
        if not timm_kwargs:
            raise
        # timm passes unknown keywords on to the model constructor, which rejects them.
        raise ConfigError(f"backbone {name!r}: timm rejected the keywords "
                          f"{sorted(timm_kwargs)} ({error}). Remove them or use ones the "
                          f"{name} constructor accepts.") from error


def download_failed(name: str, source: str, error: OSError) -> CheckpointError:
    """The error for `pretrained: True` weights that could not be fetched (no network, mostly)."""
    reason = " ".join(str(error).split())[:200]
    return CheckpointError(
        f"backbone {name!r}: pretrained: True fetches its ImageNet weights from {source}, which "
        f"failed ({type(error).__name__}: {reason}). This needs network access; offline, copy the "
        f"weight file here and set Arch.backbone.pretrained to its path, or pretrained: False. "
        f"Evaluating, exporting or resuming a checkpoint never fetches them")


def model_stride(model: nn.Module, name: str, out_stride: int | None) -> int:
    """The total downsampling of `model`'s last feature map (timm's feature_info); when the config
    gives `out_stride`, it must agree."""
    feature_info = getattr(model, "feature_info", None)
    if not feature_info:
        if out_stride is None:
            raise ConfigError(f"backbone {name!r}: timm gives no feature_info to read the stride "
                              "from; set out_stride: N (the total downsampling)")
        return out_stride  # no metadata to check against: trust the config
    stride = int(feature_info[-1]["reduction"])
    if out_stride is not None and stride != out_stride:
        raise ConfigError(
            f"backbone {name!r} gives features at stride {stride}, but out_stride is {out_stride}. "
            f"Set out_stride: {stride}, or ask timm for another stride with output_stride: N "
            "(models that support dilation).")
    return stride


def load_local_weights(model: nn.Module, path: str | os.PathLike, name: str) -> None:
    """Load a weight file into the headless `model`: classifier weights and BatchNorm step counters
    are optional, everything else must match exactly (names and shapes) or the report says why."""
    # Imported here: the ppq2l.engine package imports ppq2l.arch, which imports this module.
    from ppq2l.engine.checkpoint import is_batchnorm_counter, load_weights, read_state_dict

    weights = read_state_dict(path, what="backbone weight file")
    load_weights(model, weights, source=f"backbone weight file {path}", target=f"backbone {name!r}",
                 foreign=lambda key: key.startswith(CLASSIFIER_KEYS) or is_batchnorm_counter(key),
                 optional=is_batchnorm_counter)
