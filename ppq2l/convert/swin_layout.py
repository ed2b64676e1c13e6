"""Official Swin Transformer weights (Microsoft layout, which Query2Label's lib/models copies) to
timm's Swin layout.

Two differences, both in the key names only: Microsoft's stages end with their PatchMerging
(`layers.{i}.downsample`, i = 0..2), timm's begin with it (`layers.{i + 1}.downsample`), the same
weights applied at the same point of the forward pass; and Microsoft stores each block's
`relative_position_index` and shifted-window `attn_mask` as persistent buffers, which timm
recomputes from the window size and input size (non-persistent buffers), so they are dropped.
The merged patches are concatenated in the same order in both (x0: even rows and columns, x1: odd
rows, x2: odd columns, x3: both odd), so the reduction weights need no permutation.
"""
from __future__ import annotations

import re

import torch

# A Microsoft-layout Swin has a PatchMerging at the end of its first stage; timm's first has none.
MICROSOFT_FIRST_MERGE = "layers.0.downsample.reduction.weight"
RECOMPUTED_BUFFERS = (".relative_position_index", ".attn_mask")
_DOWNSAMPLE = re.compile(r"layers\.(\d+)\.downsample\.")


def microsoft_swin_prefixes(weights: dict[str, torch.Tensor]) -> list[str]:
    """The key prefixes (e.g. 'backbone.body.') of the Microsoft-layout Swins inside `weights`."""
    return [key.removesuffix(MICROSOFT_FIRST_MERGE) for key in weights
            if key.endswith(MICROSOFT_FIRST_MERGE)]


def microsoft_swin_to_timm(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`weights` with every Microsoft-layout Swin in timm's layout; other keys, and state dicts
    without one, unchanged."""
    prefixes = microsoft_swin_prefixes(weights)
    if not prefixes:
        return dict(weights)
    converted = {}
    for key, value in weights.items():
        prefix = next((prefix for prefix in prefixes if key.startswith(prefix)), None)
        if prefix is None:
            converted[key] = value
            continue
        if key.endswith(RECOMPUTED_BUFFERS):
            continue
        rest = _DOWNSAMPLE.sub(lambda match: f"layers.{int(match[1]) + 1}.downsample.",
                               key.removeprefix(prefix), count=1)
        converted[prefix + rest] = value
    return converted
