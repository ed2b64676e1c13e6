"""Official TResNet weights (InPlaceABN layout) to timm's TResNet layout.

The TResNet code of ASL, ML-Decoder and Query2Label builds every convolution as
`nn.Sequential(conv, InPlaceABN)` (keys `conv1.0.weight`, `conv1.1.running_mean`), and a strided
one followed by anti-aliasing as `nn.Sequential(nn.Sequential(conv, InPlaceABN), blur)`
(`conv2.0.0.weight`, `conv2.0.1.bias`); shortcuts are `downsample.<i>.0/1`. timm names the same
layers `conv`/`bn` inside a ConvNormAct (`conv1.conv.weight`, `conv2.bn.bias`,
`downsample.1.conv.weight`) and uses plain BatchNorm2d. InPlaceABN scales by |weight| + eps
(its kernels keep the scale positive so that the activation can be inverted in place), so the
BatchNorm weight becomes |weight| + eps; the activations (leaky ReLU 1e-2 in the stem, 1e-3 in the
blocks, none after the last convolution of a block) are the same in both. timm converts its own hub
weights the same way. InPlaceABN has no step counter; BatchNorm's `num_batches_tracked` is set to 0.
"""
from __future__ import annotations

import re

import torch

# InPlaceABN's default epsilon, used both under the square root and on |weight|.
INPLACE_ABN_EPS = 1e-5
# An official TResNet has both the stem and the first block convolution wrapped with their
# InPlaceABN; timm models with a deep stem (`conv1.0.weight`) name their block convolutions plainly.
OFFICIAL_STEM = "body.conv1.0.weight"
OFFICIAL_FIRST_BLOCK = "body.layer1.0.conv1.0.weight"
# `<...>.convN` or `<...>.downsample.N`, an optional `.0` (the conv + norm pair wrapped together
# with an anti-aliasing layer), then `.0` (convolution) or `.1` (InPlaceABN) and a parameter name.
_CONV_NORM_PAIR = re.compile(
    r"^(?P<layer>(?:.*\.)?(?:conv\d+|downsample\.\d+))(?:\.0)?\.(?P<part>[01])\.(?P<leaf>\w+)$")
_PART_NAMES = {"0": "conv", "1": "bn"}


def official_tresnet_prefix(weights: dict[str, torch.Tensor]) -> str | None:
    """The key prefix of a TResNet in the official InPlaceABN layout inside `weights` (e.g. ''
    or 'backbone.0.body.'), or None when there is none."""
    for key in weights:
        if key.endswith(OFFICIAL_STEM):
            prefix = key.removesuffix(OFFICIAL_STEM)
            if prefix + OFFICIAL_FIRST_BLOCK in weights:
                return prefix
    return None


def tresnet_key_to_timm(key: str) -> tuple[str, bool]:
    """timm's name for an official TResNet key, and whether it is an InPlaceABN weight."""
    match = _CONV_NORM_PAIR.match(key)
    if match is None:
        return key, False
    part = _PART_NAMES[match["part"]]
    return f"{match['layer']}.{part}.{match['leaf']}", part == "bn" and match["leaf"] == "weight"


def official_tresnet_to_timm(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`weights` with an official-layout TResNet in timm's layout; keys outside it, and state
    dicts without one, unchanged."""
    prefix = official_tresnet_prefix(weights)
    if prefix is None:
        return dict(weights)
    converted = {}
    for key, value in weights.items():
        if not key.startswith(prefix + "body."):
            converted[key] = value
            continue
        target, is_abn_weight = tresnet_key_to_timm(key)
        converted[target] = value.abs() + INPLACE_ABN_EPS if is_abn_weight else value
        if target.endswith(".bn.running_mean"):
            counter = target.removesuffix("running_mean") + "num_batches_tracked"
            converted.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return converted
