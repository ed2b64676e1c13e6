"""DETR's 2-D sine position encoding, computed for whatever feature-map size arrives."""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import Tensor, nn

from ppq2l.checks import flag, integer, number
from ppq2l.errors import ConfigError

# DETR's guard against dividing by the last cumulative position.
NORMALIZE_EPS = 1e-6


class PositionEmbeddingSine(nn.Module):
    """Sine/cosine encoding of row and column positions: [1, 2*num_pos_feats, H, W], the row (y)
    half first, sin and cos interleaved within each half; cached per (H, W, device, dtype)."""

    def __init__(self, num_pos_feats: int, temperature: float = 10000, normalize: bool = True,
                 scale: float = 2 * math.pi, max_cached_sizes: int = 16) -> None:
        super().__init__()
        where, why = "PositionEmbeddingSine", "half the hidden size, and even"
        self.num_pos_feats = integer(num_pos_feats, "num_pos_feats", minimum=2, why=why, where=where)
        if self.num_pos_feats % 2:
            raise ConfigError(f"{where}: num_pos_feats must be even ({why}), got {num_pos_feats}")
        self.temperature = number(temperature, "temperature", above=0.0, where=where)
        self.normalize = flag(normalize, "normalize", where=where)
        # only used when normalize is on, as in DETR
        self.scale = number(scale, "scale", above=0.0, where=where)
        self.max_cached_sizes = max_cached_sizes
        self._cache: OrderedDict[tuple, Tensor] = OrderedDict()

    def forward(self, features: Tensor) -> Tensor:
        """Encoding [1, 2*num_pos_feats, H, W] for a feature map [B, C, H, W] (dtype and device
        follow it). The returned tensor may be shared between calls: do not modify it in place."""
        height, width = features.shape[-2], features.shape[-1]
        if torch.jit.is_tracing() or torch.compiler.is_compiling() \
                or torch.onnx.is_in_onnx_export():
            # A cached constant would freeze the size into an exported graph.
            return self.encode(height, width, features.device, features.dtype)
        key = (int(height), int(width), features.device, features.dtype)
        cached = self._cache.get(key)
        if cached is None:
            with torch.no_grad():
                cached = self.encode(key[0], key[1], features.device, features.dtype)
            self._cache[key] = cached
            while len(self._cache) > self.max_cached_sizes:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return cached

    def encode(self, height: int, width: int, device: torch.device | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
        """Compute the encoding [1, 2*num_pos_feats, height, width] (in float32, then cast)."""
        rows = self.encode_axis(height, device)  # [H, F]
        columns = self.encode_axis(width, device)  # [W, F]
        grid = torch.cat((rows[:, None, :].expand(-1, columns.shape[0], -1),
                          columns[None, :, :].expand(rows.shape[0], -1, -1)), dim=-1)
        return grid.permute(2, 0, 1).unsqueeze(0).to(dtype)

    def encode_axis(self, length: int, device: torch.device | None) -> Tensor:
        """Encoding [length, num_pos_feats] of positions 1..length along one axis."""
        # Positions as a cumulative sum of ones: DETR's unmasked case, and shape-only for export.
        positions = torch.ones(length, dtype=torch.float32, device=device).cumsum(0)
        if self.normalize:
            positions = positions / (positions[-1:] + NORMALIZE_EPS) * self.scale
        index = torch.arange(self.num_pos_feats, dtype=torch.float32, device=device)
        # Channels 2i and 2i+1 share one frequency: the sin and cos of the same angle.
        frequencies = self.temperature ** (2 * torch.div(index, 2, rounding_mode="floor")
                                           / self.num_pos_feats)
        angles = positions[:, None] / frequencies
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=-1).flatten(1)
