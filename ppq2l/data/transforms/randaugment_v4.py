"""RandAugmentV4: the RandAugment policy of the pip package `randaugment` 1.0.2, which the official
Query2Label, ASL and ML-Decoder training scripts run (`from randaugment import RandAugment`) and
PaddleClas ports as RandAugmentV4 for its ML-Decoder recipes.

The policy: two ops, each drawn from 15 (no Identity) with a magnitude index drawn from 1..9, each
applied with probability 0.5, so about a quarter of the images pass unchanged. Strengths are
entries of 10-step ranges (`np.linspace(lo, hi, 10)[index]`); Rotate turns counter-clockwise
only; the other geometric ops and the enhancements take a random sign. The ops are Pillow's own
calls, so every op gives the package's pixels exactly; the draws come from the pipeline's numpy
generator (reproducible per sample), not from Python's `random`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from ppq2l.checks import choice
from ppq2l.data.transforms.operators import as_generator
from ppq2l.errors import ConfigError
from ppq2l.registry import TRANSFORMS

GREY = (128, 128, 128)  # the package's fill for uncovered pixels (its rotation always uses it)
CUTOUT_COLOUR = (125, 122, 113)  # the package's Cutout paints this grey
LEVELS = 10  # each range has 10 steps; the policy draws indices 1..9
APPLY_PROBABILITY = 0.5
NUM_OPS = 2


def _levels(low: float, high: float, rounded: bool = False) -> np.ndarray:
    values = np.linspace(low, high, LEVELS)
    return np.round(values).astype(int) if rounded else values


# name -> the strengths of indices 0..9 (None: the op has no strength), as the package's ranges
STRENGTHS: dict[str, np.ndarray | None] = {
    "ShearX": _levels(0, 0.3), "ShearY": _levels(0, 0.3),
    "TranslateX": _levels(0, 150 / 331), "TranslateY": _levels(0, 150 / 331),
    "Rotate": _levels(0, 30), "Color": _levels(0.0, 0.9), "Posterize": _levels(8, 4, rounded=True),
    "Solarize": _levels(256, 0), "Contrast": _levels(0.0, 0.9), "Sharpness": _levels(0.0, 0.9),
    "Brightness": _levels(0.0, 0.9), "AutoContrast": None, "Equalize": None, "Invert": None,
    "Cutout": _levels(0, 20, rounded=True),
}
OPS = tuple(STRENGTHS)
SIGNED = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Color", "Contrast", "Sharpness",
          "Brightness")
CUTOUT_STYLES = ("randaugment", "paddleclas")


def _affine(image: Image.Image, matrix: tuple, resample: int) -> Image.Image:
    # Pillow maps each output pixel (x, y) to input (a x + b y + c, d x + e y + f): shears turn
    # about the top-left corner, as in the package.
    return image.transform(image.size, Image.Transform.AFFINE, matrix, resample, fillcolor=GREY)


def _enhance(enhancer: type) -> Callable[[Image.Image, float], Image.Image]:
    return lambda image, factor: enhancer(image).enhance(factor)


PIXEL_OPS: dict[str, Callable[[Image.Image, float], Image.Image]] = {
    "ShearX": lambda image, v: _affine(image, (1, v, 0, 0, 1, 0), Image.Resampling.BICUBIC),
    "ShearY": lambda image, v: _affine(image, (1, 0, 0, v, 1, 0), Image.Resampling.BICUBIC),
    "TranslateX": lambda image, v: _affine(image, (1, 0, v * image.size[0], 0, 1, 0),
                                           Image.Resampling.NEAREST),
    "TranslateY": lambda image, v: _affine(image, (1, 0, 0, 0, 1, v * image.size[1]),
                                           Image.Resampling.NEAREST),
    "Rotate": lambda image, v: image.rotate(v, Image.Resampling.NEAREST, fillcolor=GREY),
    "Color": _enhance(ImageEnhance.Color),
    "Contrast": _enhance(ImageEnhance.Contrast),
    "Sharpness": _enhance(ImageEnhance.Sharpness),
    "Brightness": _enhance(ImageEnhance.Brightness),
    "Posterize": lambda image, v: ImageOps.posterize(image, int(v)),
    "Solarize": lambda image, v: ImageOps.solarize(image, v),
    "AutoContrast": lambda image, v: ImageOps.autocontrast(image),
    "Equalize": lambda image, v: ImageOps.equalize(image),
    "Invert": lambda image, v: ImageOps.invert(image),
}


def cutout_box(size: tuple[int, int], strength: int, centre: tuple[int, int],
               style: str) -> tuple[int, int, int, int]:
    """(left, top, right, bottom), right and bottom exclusive, of the hole that Cutout at
    `strength` paints around `centre` (x, y) in an image of `size` (w, h). randaugment: a square
    of side 2 * (strength // 2); paddleclas (its RandAugmentV4's TF-style cutout): of side
    2 * strength. Both are clipped to the image."""
    width, height = size
    half = strength // 2 if style == "randaugment" else strength
    x, y = centre
    return max(0, x - half), max(0, y - half), min(width, x + half), min(height, y + half)


def cutout_centre(size: tuple[int, int], style: str, rng: np.random.Generator) -> tuple[int, int]:
    """Where the hole goes: uniform over the pixels (randaugment), or over 0..w and 0..h
    inclusive (paddleclas draws from one past the last pixel too)."""
    extra = 0 if style == "randaugment" else 1
    return int(rng.integers(size[0] + extra)), int(rng.integers(size[1] + extra))


def apply_op(image: Image.Image, name: str, index: int, sign: int = 1,
             centre: tuple[int, int] = (0, 0), cutout: str = "randaugment") -> Image.Image:
    """One op of the policy on an RGB PIL image at magnitude `index` (0..9), with `sign` (+1 or -1)
    for the signed ops and the hole's `centre` (x, y) for Cutout."""
    strengths = STRENGTHS[name]
    value = 0.0 if strengths is None else strengths[index]
    if name == "Cutout":
        image = image.copy()
        colour = CUTOUT_COLOUR if cutout == "randaugment" else (0, 0, 0)
        left, top, right, bottom = cutout_box(image.size, int(value), centre, cutout)
        if right > left and bottom > top:
            image.paste(colour, (left, top, right, bottom))
        return image
    if name in SIGNED:
        value = sign * value
        if name in ("Color", "Contrast", "Sharpness", "Brightness"):
            value = 1.0 + value
    return PIXEL_OPS[name](image, value)


@TRANSFORMS.register
class RandAugmentV4:
    """The RandAugment of the official Query2Label / ASL / ML-Decoder training (pip `randaugment`
    1.0.2) under PaddleClas's name, on a uint8 RGB HWC image. `cutout`: randaugment (the package's
    small grey square, side up to 20 px; what the official PyTorch code runs) or paddleclas
    (PaddleClas's RandAugmentV4: a black square of side up to 40 px)."""

    def __init__(self, cutout: str = "randaugment") -> None:
        self.cutout = choice(cutout, "cutout", CUTOUT_STYLES)

    @staticmethod
    def draw(rng: np.random.Generator) -> list[tuple[str, int, bool]]:
        """The policy's draw: (op, magnitude index 1..9, applied) for each of the two ops."""
        return [(OPS[int(rng.integers(len(OPS)))], int(rng.integers(1, LEVELS)),
                 bool(rng.random() < APPLY_PROBABILITY)) for _ in range(NUM_OPS)]

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ConfigError(f"RandAugmentV4 needs a uint8 HWC RGB image, got shape {image.shape} "
                              f"{image.dtype}; place it after DecodeImage and before NormalizeImage")
        rng = as_generator(rng)
        picture = None
        for name, index, applied in self.draw(rng):
            if not applied:
                continue
            picture = picture if picture is not None else Image.fromarray(image)
            sign = 1 if name not in SIGNED or rng.random() < 0.5 else -1
            centre = cutout_centre(picture.size, self.cutout, rng) if name == "Cutout" else (0, 0)
            picture = apply_op(picture, name, index, sign, centre, self.cutout)
        return image if picture is None else np.array(picture)
