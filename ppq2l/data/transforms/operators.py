"""The geometric and pixel ops: resize, centre crop, flip, Cutout and the HWC -> CHW layout change,
with the helpers the other op modules share (the generator, interpolation names)."""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

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


def as_generator(rng: np.random.Generator | None) -> np.random.Generator:
    """`rng` itself, or a fresh OS-seeded generator (never a shared one: forked workers would
    otherwise repeat each other's draws)."""
    return rng if rng is not None else np.random.default_rng()


def _size_pair(value: Any, name: str) -> tuple[int, int]:
    """An int or a [w, h] pair of positive ints as (w, h)."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an int or [width, height], got {value!r}")
    if isinstance(value, int):
        value = [value, value]
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ConfigError(f"{name} must be a positive int or [width, height] of positive ints, "
                          f"got {value!r}")
    return int(value[0]), int(value[1])


def _check_probability(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


# ------------------------------------------------------------------------------- geometry
@TRANSFORMS.register
class ResizeImage:
    """Resize to `size` (an int or [w, h], aspect not kept) or so the short side is `resize_short`."""

    def __init__(self, size: int | Sequence[int] | None = None, resize_short: int | None = None,
                 interpolation: str | None = "bilinear", backend: str = "cv2") -> None:
        if (size is None) == (resize_short is None):
            raise ConfigError(f"set exactly one of size and resize_short, got size={size!r}, "
                              f"resize_short={resize_short!r}")
        self.size = _size_pair(size, "size") if size is not None else None
        if resize_short is not None and (isinstance(resize_short, bool) or not isinstance(
                resize_short, int) or resize_short <= 0):
            raise ConfigError(f"resize_short must be a positive int, got {resize_short!r}")
        self.resize_short = resize_short
        interpolation = "bilinear" if interpolation is None else interpolation
        if interpolation != RANDOM_INTERPOLATION and interpolation not in INTERPOLATIONS:
            raise ConfigError(f"interpolation must be one of "
                              f"{', '.join([*INTERPOLATIONS, RANDOM_INTERPOLATION])}, got {interpolation!r}")
        self.interpolation = interpolation
        if backend != "cv2":
            raise ConfigError(f"backend must be 'cv2' (the only one available), got {backend!r}")

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
            names = list(INTERPOLATIONS)
            name = names[int(as_generator(rng).integers(len(names)))]
        resized = cv2.resize(image, self.output_size(width, height),
                             interpolation=INTERPOLATIONS[name])
        # cv2 drops a trailing channel axis of size 1; keep the layout the next op expects
        return resized.reshape(*resized.shape[:2], *image.shape[2:])


@TRANSFORMS.register
class CropImage:
    """Center crop to `size` (an int or [w, h]); the image must be at least that large."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.width, self.height = _size_pair(size, "size")

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
        if flip_code not in (-1, 0, 1) or isinstance(flip_code, bool):
            raise ConfigError(f"flip_code must be 1 (horizontal), 0 (vertical) or -1 (both), "
                              f"got {flip_code!r}")
        self.flip_code, self.prob = flip_code, _check_probability(prob, "prob")

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
        if isinstance(n_holes, bool) or not isinstance(n_holes, int) or n_holes < 1:
            raise ConfigError(f"n_holes must be an int >= 1, got {n_holes!r}")
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
            raise ConfigError(f"length must be a positive int (pixels) or null, got {length!r}")
        if length is None and (isinstance(fact, bool) or not isinstance(fact, (int, float))
                               or not 0 < fact <= 1):
            raise ConfigError(f"fact must be a number in (0, 1], got {fact!r}")
        if fill != "random" and (isinstance(fill, bool) or not isinstance(fill, (int, float))):
            raise ConfigError(f"fill must be 'random' or a number, got {fill!r}")
        self.n_holes, self.length, self.fact, self.fill = n_holes, length, fact, fill

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

