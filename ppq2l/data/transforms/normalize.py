"""NormalizeImage: (image * scale - mean) / std as float32, the numbers the model takes."""
from __future__ import annotations

import copy
import re
from typing import Any, Sequence

import cv2
import numpy as np

from ppq2l.checks import choice, number, number_list
from ppq2l.errors import ConfigError
from ppq2l.registry import TRANSFORMS

_FRACTION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*/\s*(\d+(?:\.\d*)?|\.\d+)\s*$")


def parse_scale(value: Any) -> float:
    """A positive number, or a string `a/b` of two decimal numbers as PaddleClas configs write
    it (`1.0/255.0`); anything else is a ConfigError (nothing is evaluated)."""
    if isinstance(value, str):
        match = _FRACTION.match(value)
        if not match:
            raise ConfigError(f"scale must be a number or a fraction like '1.0/255.0', got {value!r}")
        numerator, denominator = float(match.group(1)), float(match.group(2))
        if denominator == 0:
            raise ConfigError(f"scale {value!r} divides by zero")
        value = numerator / denominator
    return number(value, "scale", above=0)


def normalize_in_place(values: Any, multiplier: Any, offset: Any) -> Any:
    """The one normalisation arithmetic, in place on float32 `values` (a numpy array or a torch
    tensor): `values * multiplier` rounded to float32, then `- offset` rounded again. The two
    constants are NormalizeImage's, shaped to broadcast over the channels of `values`. Every path
    (HWC rows, CHW planes, a uint8 batch on the training device) runs this, so all give the same
    bits; one multiply and one subtract per value instead of `(x * scale - mean) / std`."""
    values *= multiplier
    values -= offset
    return values


@TRANSFORMS.register
class NormalizeImage:
    """(image * scale - mean) / std as float32. `order` is the layout it gets: HWC ('hwc', or ''
    as PaddleClas configs write it) or CHW ('chw'); it returns the same layout, except that a
    pipeline built from a config joins it with a ToCHWImage right after it (`writing_chw`)."""

    def __init__(self, scale: float | str = 1.0 / 255.0,
                 mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225), order: str = "hwc") -> None:
        self.scale = parse_scale(scale)
        self.mean = np.asarray(number_list(mean, "mean", example="[0.485, 0.456, 0.406] (one per "
                                           "channel)"), dtype=np.float32)
        self.std = np.asarray(number_list(std, "std", above=0, example="[0.229, 0.224, 0.225] (one "
                                          "per channel)"), dtype=np.float32)
        if len(self.mean) != len(self.std):
            raise ConfigError(f"mean and std need one value per channel each, got {len(self.mean)} "
                              f"and {len(self.std)}")
        layout = "hwc" if order == "" else order.lower() if isinstance(order, str) else order
        self.channels_first = choice(layout, "order", ["hwc", "chw"]) == "chw"
        self.chw_output = self.channels_first
        # The constants of normalize_in_place, per channel, derived here once for every path.
        self.multiplier = np.float32(self.scale) / self.std
        self.offset = self.mean / self.std
        self._row_constants: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def writing_chw(self) -> NormalizeImage:
        """This op on HWC images followed by ToCHWImage, as one op: the same numbers written
        straight into a CHW array, without transposing a float32 copy afterwards."""
        joined = copy.copy(self)
        joined.chw_output = True
        return joined

    def row_constants(self, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The per-channel multiplier and offset repeated along one HWC image row (W * C values),
        made once per width. Broadcasting a C-long axis costs numpy several times more than
        broadcasting a whole row, and every element still gets exactly the same two operations."""
        if width not in self._row_constants:
            self._row_constants[width] = (np.tile(self.multiplier, width),
                                          np.tile(self.offset, width))
        return self._row_constants[width]

    def _check_layout(self, image: np.ndarray) -> None:
        channels = image.shape[0] if self.channels_first else image.shape[-1]
        if image.ndim != 3 or channels != len(self.mean):
            layout = "CHW" if self.channels_first else "HWC"
            raise ConfigError(f"NormalizeImage expects a {layout} image with {len(self.mean)} channels, "
                              f"got shape {image.shape}; check `order` and the op order")

    def _chw_float32(self, image: np.ndarray) -> np.ndarray:
        """A new C-contiguous float32 CHW array with the values of `image`."""
        if self.channels_first:
            return image.astype(np.float32, order="C")
        height, width, channels = image.shape
        result = np.empty((channels, height, width), dtype=np.float32)
        # cv2.split copies uint8 planes out faster than numpy reads the strided channel views
        if image.dtype == np.uint8 and image.size:
            planes = cv2.split(image)
        else:
            planes = [image[..., channel] for channel in range(channels)]
        for plane, out in zip(planes, result):
            out[...] = plane
        return result

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        self._check_layout(image)
        if self.chw_output:
            result = self._chw_float32(image)
            return normalize_in_place(result, self.multiplier.reshape(-1, 1, 1),
                                      self.offset.reshape(-1, 1, 1))
        result = image.astype(np.float32, order="C")
        rows = result.reshape(image.shape[0], image.shape[1] * image.shape[2])  # a view (C order)
        normalize_in_place(rows, *self.row_constants(image.shape[1]))
        return result
