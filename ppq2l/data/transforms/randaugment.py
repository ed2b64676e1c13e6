"""RandAugment (Cubuk et al. 2020) on uint8 RGB HWC images with OpenCV: its ops, their strength
ranges and the policy that draws them."""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import cv2
import numpy as np

from ppq2l.checks import choice, integer, number, number_list
from ppq2l.data.transforms.operators import INTERPOLATIONS, as_generator
from ppq2l.errors import ConfigError
from ppq2l.registry import TRANSFORMS


def _blend(image: np.ndarray, degenerate: np.ndarray, factor: float) -> np.ndarray:
    """degenerate + factor * (image - degenerate), saturated to uint8 (PIL ImageEnhance semantics)."""
    return cv2.addWeighted(image, factor, np.broadcast_to(degenerate, image.shape).astype(np.uint8),
                           1.0 - factor, 0.0)


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


class Warp(NamedTuple):
    """How RandAugment's geometric ops resample: the colour of uncovered pixels and the OpenCV
    interpolation flag."""
    fill: tuple[int, ...]
    flags: int


def _affine(image: np.ndarray, matrix: np.ndarray, warp: Warp) -> np.ndarray:
    height, width = image.shape[:2]
    return cv2.warpAffine(image, matrix.astype(np.float64), (width, height), flags=warp.flags,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=warp.fill)


def _about_center(matrix: np.ndarray, image: np.ndarray) -> np.ndarray:
    """A 2x3 linear map applied about the image centre instead of the top-left corner."""
    height, width = image.shape[:2]
    center = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    linear = matrix[:, :2]
    return np.hstack([linear, (center - linear @ center)[:, None]])


def _identity(image, value, warp):
    return image


def _autocontrast(image, value, warp):
    channels = []
    for channel in cv2.split(image):
        low, high = int(channel.min()), int(channel.max())
        if high > low:
            table = np.clip((np.arange(256) - low) * (255.0 / (high - low)), 0, 255)
            channel = cv2.LUT(channel, np.rint(table).astype(np.uint8))
        channels.append(channel)
    return cv2.merge(channels)


def _equalize(image, value, warp):
    return cv2.merge([cv2.equalizeHist(channel) for channel in cv2.split(image)])


def _rotate(image, degrees, warp):
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), degrees, 1.0)
    return _affine(image, matrix, warp)


def _shear_x(image, shear, warp):
    return _affine(image, _about_center(np.array([[1.0, shear, 0.0], [0.0, 1.0, 0.0]]), image), warp)


def _shear_y(image, shear, warp):
    return _affine(image, _about_center(np.array([[1.0, 0.0, 0.0], [shear, 1.0, 0.0]]), image), warp)


def _translate_x(image, fraction, warp):
    return _affine(image, np.array([[1.0, 0.0, fraction * image.shape[1]], [0.0, 1.0, 0.0]]), warp)


def _translate_y(image, fraction, warp):
    return _affine(image, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, fraction * image.shape[0]]]), warp)


def _solarize(image, threshold, warp):
    # as a 256-entry lookup table: the same pixels as np.where(image >= threshold, 255 - image,
    # image), an order of magnitude faster
    levels = np.arange(256)
    return cv2.LUT(image, np.where(levels >= threshold, 255 - levels, levels).astype(np.uint8))


def _posterize(image, bits, warp):
    mask = np.uint8((0xFF << (8 - int(bits))) & 0xFF)
    return image & mask


def _color(image, factor, warp):
    return _blend(image, cv2.cvtColor(_gray(image), cv2.COLOR_GRAY2RGB), factor)


def _contrast(image, factor, warp):
    mean = int(_gray(image).mean() + 0.5)
    return _blend(image, np.full_like(image, mean), factor)


def _brightness(image, factor, warp):
    return _blend(image, np.zeros_like(image), factor)


def _sharpness(image, factor, warp):
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13.0
    smooth = cv2.filter2D(image, -1, kernel)
    smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1] = image[0], image[-1], image[:, 0], image[:, -1]
    return _blend(image, smooth, factor)


# name -> (function, value at magnitude 0, value at the maximum magnitude, random sign)
RANDAUGMENT_OPS: dict[str, tuple[Callable, float, float, bool]] = {
    "Identity": (_identity, 0.0, 0.0, False),
    "AutoContrast": (_autocontrast, 0.0, 0.0, False),
    "Equalize": (_equalize, 0.0, 0.0, False),
    "Rotate": (_rotate, 0.0, 30.0, True),
    "Solarize": (_solarize, 256.0, 0.0, False),
    "Color": (_color, 0.0, 0.9, True),
    "Posterize": (_posterize, 8.0, 4.0, False),
    "Contrast": (_contrast, 0.0, 0.9, True),
    "Brightness": (_brightness, 0.0, 0.9, True),
    "Sharpness": (_sharpness, 0.0, 0.9, True),
    "ShearX": (_shear_x, 0.0, 0.3, True),
    "ShearY": (_shear_y, 0.0, 0.3, True),
    "TranslateX": (_translate_x, 0.0, 150.0 / 331.0, True),
    "TranslateY": (_translate_y, 0.0, 150.0 / 331.0, True),
}
WARP_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")  # for the geometric ops
ENHANCE_OPS = ("Color", "Contrast", "Brightness", "Sharpness")  # value v means factor 1 +- v


@TRANSFORMS.register
class RandAugment:
    """Apply `num_layers` ops drawn uniformly from RANDAUGMENT_OPS, each at strength
    `magnitude / max_level` of its range (ranges as in RandAugment), to a uint8 RGB HWC image.
    `interpolation` is how Rotate, Shear and Translate resample (nearest, bilinear or bicubic).
    This is not the policy of the official Query2Label / ASL / ML-Decoder training (that is
    RandAugmentV4: ops applied with probability 0.5 at random magnitudes, Invert and Cutout among
    them, no Identity, shears resampled bicubic about the top-left corner, rotation one way)."""

    def __init__(self, num_layers: int = 2, magnitude: float = 5, max_level: float = 10,
                 fillcolor: Sequence[int] | int = (128, 128, 128),
                 ops: Sequence[str] | None = None, interpolation: str = "bilinear") -> None:
        self.num_layers = integer(num_layers, "num_layers", minimum=0)
        max_level = number(max_level, "max_level", above=0)
        magnitude = number(magnitude, "magnitude", minimum=0, maximum=max_level,
                           why=f"the strength out of max_level {max_level:g}")
        if isinstance(fillcolor, (list, tuple)):
            fill = number_list(fillcolor, "fillcolor", length=3, integers=True, minimum=0,
                               maximum=255, example="[128, 128, 128]")
        else:
            fill = [integer(fillcolor, "fillcolor", minimum=0, maximum=255,
                            why="or a list of three")] * 3
        if ops is not None and (not isinstance(ops, (list, tuple)) or not ops):
            raise ConfigError(f"ops must be a non-empty list of {', '.join(RANDAUGMENT_OPS)} (or "
                              f"null for all of them), got {ops!r}")
        names = [choice(name, "each of ops", list(RANDAUGMENT_OPS)) for name in ops or RANDAUGMENT_OPS]
        self.level = magnitude / max_level
        interpolation = choice(interpolation, "interpolation", WARP_INTERPOLATIONS)
        self.warp, self.names = Warp(tuple(fill), INTERPOLATIONS[interpolation]), names

    def op_value(self, name: str) -> float:
        """The unsigned strength `name` is applied with at this magnitude."""
        _, at_zero, at_max, _ = RANDAUGMENT_OPS[name]
        value = at_zero + (at_max - at_zero) * self.level
        return float(round(value)) if name == "Posterize" else value

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ConfigError(f"RandAugment needs a uint8 HWC RGB image, got shape {image.shape} "
                              f"{image.dtype}; place it after DecodeImage and before NormalizeImage")
        rng = as_generator(rng)
        for _ in range(self.num_layers):
            name = self.names[int(rng.integers(len(self.names)))]
            function, _, _, signed = RANDAUGMENT_OPS[name]
            value = self.op_value(name)
            if signed and rng.random() < 0.5:
                value = -value
            if name in ENHANCE_OPS:
                value = 1.0 + value
            image = function(image, value, self.warp)
        return image

