"""Per-label maps from a torch model: the models that have them implement
`forward_with_maps(images, layer=-1, head=None) -> (logits, maps [B, C, h, w])` with the plain
forward's logits; this module asks for them, names a model that cannot give them, and
upsamples maps to the image size."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ppq2l.errors import ConfigError

MAPS_METHOD = "forward_with_maps"
SUPPORTED = "Query2Label (label-query cross-attention), MLDecoder (query attention) and " \
            "PooledClassifier (class activation maps)"


def unsupported_reason(model: nn.Module) -> str | None:
    """Why `model` cannot give per-label maps, or None when it can."""
    if callable(getattr(model, MAPS_METHOD, None)):
        return None
    return (f"the model {type(model).__name__} has no per-label maps ({MAPS_METHOD} is "
            f"missing); maps come from {SUPPORTED}")


def require_maps(model: nn.Module) -> nn.Module:
    """`model` when it gives per-label maps; a ConfigError naming it otherwise."""
    reason = unsupported_reason(model)
    if reason is not None:
        raise ConfigError(reason)
    return model


def explain(model: nn.Module, images: Tensor, layer: int = -1, head: int | None = None
            ) -> tuple[Tensor, Tensor]:
    """Logits [B, C] (equal to `model(images)`) and non-negative maps [B, C, h, w] at the feature
    resolution. `layer` / `head` pick one decoder layer / attention head (default: the last
    layer, the mean over heads)."""
    return getattr(require_maps(model), MAPS_METHOD)(images, layer=layer, head=head)


def upsample_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Maps [B, C, h, w] resized to `size` (height, width) by bilinear interpolation (pixel
    centres aligned, as cv2.resize does), clamped at 0 so they stay non-negative."""
    resized = F.interpolate(maps.float(), size=(int(size[0]), int(size[1])), mode="bilinear",
                            align_corners=False)
    return resized.clamp_min(0.0)


class ScoresAndMaps(nn.Module):
    """The model as the exported graph with maps runs it: images -> (sigmoid scores [B, C],
    maps [B, C, h, w])."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = require_maps(model)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        logits, maps = explain(self.model, images)
        return torch.sigmoid(logits), maps


def map_peaks(maps: Tensor) -> Tensor:
    """The peak of every map [B, C, h, w] as (x, y) fractions of the input [B, C, 2]: its highest
    cell (the first on ties), placed to sub-cell precision at the weighted mean of the centres of
    that cell and its neighbours (the cell's own centre when they are all 0). On coarse maps
    (4x4 at 64 px) a cell centre alone would put the peak up to half a cell off."""
    height, width = maps.shape[-2:]
    flat = maps.flatten(2).argmax(dim=-1)
    rows, columns = torch.div(flat, width, rounding_mode="floor"), flat % width
    ys = torch.arange(height, device=maps.device, dtype=maps.dtype).view(1, 1, height, 1)
    xs = torch.arange(width, device=maps.device, dtype=maps.dtype).view(1, 1, 1, width)
    near = ((ys - rows[..., None, None]).abs() <= 1) & ((xs - columns[..., None, None]).abs() <= 1)
    weights = torch.where(near, maps.clamp_min(0), torch.zeros_like(maps))
    total = weights.sum(dim=(2, 3))
    found = total > 0
    total = torch.where(found, total, torch.ones_like(total))
    x = torch.where(found, (weights * (xs + 0.5)).sum(dim=(2, 3)) / total, columns + 0.5)
    y = torch.where(found, (weights * (ys + 0.5)).sum(dim=(2, 3)) / total, rows + 0.5)
    return torch.stack([x / width, y / height], dim=-1)


class PeakRecorder(nn.Module):
    """The model as evaluation calls it (images -> logits, the plain forward's), keeping the
    peak of every per-label map (`map_peaks`, as numpy) in `peaks`, one array per batch."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = require_maps(model)
        self.peaks: list = []

    def forward(self, images: Tensor) -> Tensor:
        logits, maps = explain(self.model, images)
        self.peaks.append(map_peaks(maps.float()).cpu().numpy())
        return logits
