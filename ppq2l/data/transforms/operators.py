"""The geometric and pixel ops: resize, centre crop, flip, Cutout and the HWC -> CHW layout change,
with the helpers the other op modules share (the generator, interpolation names)."""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np
from PIL import Image

from ppq2l.checks import choice, integer, number, number_list
from ppq2l.errors import ConfigError, DataError
from ppq2l.registry import TRANSFORMS

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
RANDOM_INTERPOLATION = "random"
# Pillow's filters by PaddleClas's names (UnifiedResize, backend pil). Pillow widens its filter when
# it shrinks an image (antialiasing), as torchvision's Resize on PIL images does; OpenCV does not.
PIL_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
    "hamming": Image.Resampling.HAMMING,
}
RESIZE_BACKENDS = {"cv2": INTERPOLATIONS, "pil": PIL_INTERPOLATIONS}


def as_generator(rng: np.random.Generator | None) -> np.random.Generator:
    """`rng` itself, or a fresh OS-seeded generator (never a shared one: forked workers would
    otherwise repeat each other's draws)."""
    return rng if rng is not None else np.random.default_rng()


def size_pair(value: Any, key: str) -> tuple[int, int]:
    """A positive int (a square) or a [width, height] list of positive ints, as (width, height)."""
    if isinstance(value, (list, tuple)):
        width, height = number_list(value, key, length=2, integers=True, minimum=1,
                                    example="[448, 448] (width, height)")
        return width, height
    side = integer(value, key, minimum=1, why="or a [width, height] list")
    return side, side


# ------------------------------------------------------------------------------- geometry
@TRANSFORMS.register
class ResizeImage:
    """Resize to `size` (an int or [w, h], aspect not kept) or so the short side is `resize_short`.
    `backend`: cv2 (OpenCV, no antialiasing when shrinking) or pil (Pillow, antialiased: the
    pixels of torchvision's `Resize` on a PIL image, which the official Query2Label, ASL and
    ML-Decoder code trains and evaluates on, and of PaddleClas's `backend: pil`)."""

    def __init__(self, size: int | Sequence[int] | None = None, resize_short: int | None = None,
                 interpolation: str | None = "bilinear", backend: str = "cv2") -> None:
        if (size is None) == (resize_short is None):
            raise ConfigError(f"set exactly one of size and resize_short, got size={size!r}, "
                              f"resize_short={resize_short!r}")
        self.size = size_pair(size, "size") if size is not None else None
        self.resize_short = integer(resize_short, "resize_short", minimum=1, allow_none=True)
        self.backend = choice(backend, "backend", list(RESIZE_BACKENDS))
        self.filters = RESIZE_BACKENDS[self.backend]
        interpolation = "bilinear" if interpolation is None else interpolation
        key = "interpolation" if self.backend == "cv2" else "interpolation (backend pil)"
        self.interpolation = choice(interpolation, key, [*self.filters, RANDOM_INTERPOLATION])

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) an image of `width` x `height` is resized to."""
        if self.size is not None:
            return self.size
        ratio = self.resize_short / min(width, height)
        return max(1, round(width * ratio)), max(1, round(height * ratio))

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        height, width = image.shape[:2]
        name = self.interpolation
        if name == RANDOM_INTERPOLATION:
            names = list(self.filters)
            name = names[int(as_generator(rng).integers(len(names)))]
        size = self.output_size(width, height)
        if self.backend == "pil":
            return pil_resize(image, size, self.filters[name])
        resized = cv2.resize(image, size, interpolation=self.filters[name])
        # cv2 drops a trailing channel axis of size 1; keep the layout the next op expects
        return resized.reshape(*resized.shape[:2], *image.shape[2:])


def pil_resize(image: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """`image` (uint8, HW, HW1 or HW3) resized by Pillow to `size` (w, h), in the same layout."""
    channels = image.shape[2] if image.ndim == 3 else 0
    if image.dtype != np.uint8 or channels not in (0, 1, 3):
        raise ConfigError(f"ResizeImage backend pil needs a uint8 image with 1 or 3 channels, got "
                          f"shape {image.shape} {image.dtype}; place it before NormalizeImage or "
                          f"use backend cv2")
    planar = image.reshape(image.shape[:2]) if channels == 1 else image
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(planar)).resize(size, resample))
    return resized.reshape(*resized.shape[:2], *image.shape[2:])


@TRANSFORMS.register
class CropImage:
    """Center crop to `size` (an int or [w, h]); the image must be at least that large."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.width, self.height = size_pair(size, "size")

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        height, width = image.shape[:2]
        if height < self.height or width < self.width:
            raise DataError(f"CropImage: a {width}x{height} image is smaller than the crop "
                            f"{self.width}x{self.height}; resize it first (ResizeImage resize_short)")
        top, left = (height - self.height) // 2, (width - self.width) // 2
        return image[top:top + self.height, left:left + self.width]


@TRANSFORMS.register
@TRANSFORMS.register(name="RandFlipImage")  # the PaddleClas name of the same op
class RandomFlip:
    """With probability `prob` flip an HWC image: flip_code 1 left-right, 0 up-down, -1 both."""

    def __init__(self, flip_code: int = 1, prob: float = 0.5) -> None:
        self.flip_code = integer(flip_code, "flip_code", minimum=-1, maximum=1,
                                 why="1 horizontal, 0 vertical, -1 both")
        self.prob = number(prob, "prob", minimum=0, maximum=1)

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if as_generator(rng).random() >= self.prob:
            return image
        if self.flip_code in (0, -1):
            image = image[::-1]
        if self.flip_code in (1, -1):
            image = image[:, ::-1]
        return np.ascontiguousarray(image)


# --------------------------------------------------------------------------------- Cutout
@TRANSFORMS.register
class Cutout:
    """Paint `n_holes` squares of side `length` px (or `fact * min(h, w)`) at random centres,
    clipped to the image, with a random colour per hole (fill="random") or a constant."""

    def __init__(self, n_holes: int = 1, length: int | None = None, fact: float = 0.5,
                 fill: str | int | float = "random") -> None:
        self.n_holes = integer(n_holes, "n_holes", minimum=1)
        self.length = integer(length, "length", minimum=1, allow_none=True, why="pixels")
        if length is None:
            number(fact, "fact", above=0, maximum=1, why="of the image's short side")
        if fill != "random":
            number(fill, "fill", why="or 'random'")
        self.fact, self.fill = fact, fill

    def side(self, height: int, width: int) -> int:
        """Side in pixels of each square hole for an image of this size."""
        return self.length if self.length is not None else max(1, round(self.fact * min(height, width)))

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if self.fill == "random" and image.dtype != np.uint8:
            raise ConfigError(f"Cutout fill='random' needs a uint8 image, got {image.dtype}; place "
                              "Cutout before NormalizeImage or give a numeric fill")
        rng = as_generator(rng)
        height, width = image.shape[:2]
        side = self.side(height, width)
        image = image.copy()
        for _ in range(self.n_holes):
            center_y, center_x = int(rng.integers(height)), int(rng.integers(width))
            top, left = max(0, center_y - side // 2), max(0, center_x - side // 2)
            bottom, right = min(height, center_y - side // 2 + side), min(width, center_x - side // 2 + side)
            if self.fill == "random":
                colour = rng.integers(0, 256, size=image.shape[2:], dtype=np.uint8)
            else:
                colour = self.fill
            # Filling from one whole painted row: numpy repeats a 3-value colour over a region
            # several times slower than it copies rows.
            row = np.empty((max(0, right - left), *image.shape[2:]), dtype=image.dtype)
            row[...] = colour
            image[top:bottom, left:right] = row
        return image



@TRANSFORMS.register
class ToCHWImage:
    """HWC -> CHW (contiguous), the layout the model takes."""

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if image.ndim != 3:
            raise ConfigError(f"ToCHWImage expects an HWC image, got shape {image.shape}")
        return np.ascontiguousarray(image.transpose(2, 0, 1))

