"""Per-image preprocessing ops built from `- OpName: {kwargs}` lists (PaddleClas names and keywords).

Only numpy and OpenCV are used, so a deploy predictor without torch can run the same pipeline.
Every op is called as `op(image, rng)`; ops that draw random numbers take them from `rng`, a
`np.random.Generator`. The DataLoader passes a generator seeded per sample, which makes a run
reproducible whatever the number of workers; with `rng=None` a fresh unseeded generator is used.
"""
from __future__ import annotations

import math
import re
import struct
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import cv2
import numpy as np

from ppq2l.errors import ConfigError, DataError
from ppq2l.registry import TRANSFORMS, Registry, check_keywords, parse_component_entry

ENTRY_SHAPE = "a one-key mapping such as `- ResizeImage: {size: 224}` (keywords may be empty)"

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
RANDOM_INTERPOLATION = "random"


def _generator(rng: np.random.Generator | None) -> np.random.Generator:
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


class Compose:
    """Applies ops in order, handing each the same generator; `Compose(ops)(image, rng)`.

    `ops` is fixed at construction (a tuple). A NormalizeImage on HWC images directly followed by
    ToCHWImage runs as one step, `NormalizeImage.normalize_to_chw`, which writes the same numbers
    straight into the CHW layout instead of transposing a float32 copy afterwards."""

    def __init__(self, ops: Sequence[Callable[..., np.ndarray]]) -> None:
        self.ops = tuple(ops)
        self.steps: list[Callable[..., Any]] = []
        index = 0
        while index < len(self.ops):
            op = self.ops[index]
            following = self.ops[index + 1] if index + 1 < len(self.ops) else None
            if (isinstance(op, NormalizeImage) and not op.channels_first
                    and isinstance(following, ToCHWImage)):
                self.steps.append(op.normalize_to_chw)
                index += 2
            else:
                self.steps.append(op)
                index += 1

    def __call__(self, image: Any, rng: np.random.Generator | None = None) -> Any:
        rng = _generator(rng)
        for step in self.steps:
            image = step(image, rng)
        return image

    def __len__(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        return f"Compose({', '.join(type(op).__name__ for op in self.ops)})"


# ----------------------------------------------------------------------------------- decoding
def _tiff_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block; 1 when absent."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", tiff[4:8])[0]
    if ifd + 2 > len(tiff):
        return 1
    count = struct.unpack(order + "H", tiff[ifd:ifd + 2])[0]
    for entry in range(count):
        start = ifd + 2 + 12 * entry
        if start + 12 > len(tiff):
            break
        tag, kind = struct.unpack(order + "HH", tiff[start:start + 4])
        if tag == 0x0112 and kind == 3:  # SHORT, stored in the first two bytes of the value field
            value = struct.unpack(order + "H", tiff[start + 8:start + 10])[0]
            return value if 1 <= value <= 8 else 1
    return 1


def _jpeg_header_segments(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(marker, payload) of every JPEG segment before the compressed image data."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            position += 2
            continue
        if marker in (0xDA, 0xD9):  # image data starts: metadata comes before it
            return
        length = struct.unpack(">H", data[position + 2:position + 4])[0]
        yield marker, data[position + 4:position + 2 + length]
        position += 2 + length


# Start-of-frame markers (baseline, progressive, lossless, arithmetic...), which hold the size;
# C4, C8 and CC share the range but are other segments.
JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) stored in a JPEG's frame header, before any EXIF rotation; None for
    other formats or a JPEG without a readable frame header."""
    if data[:2] != b"\xff\xd8":
        return None
    for marker, segment in _jpeg_header_segments(data):
        if marker in JPEG_FRAME_MARKERS and len(segment) >= 5:
            height, width = struct.unpack(">HH", segment[1:5])
            return width, height
    return None


def exif_orientation(data: bytes) -> int:
    """EXIF orientation (1..8) of JPEG (APP1) or PNG (eXIf) bytes; 1 for other formats or none.
    Needed because OpenCV ignores orientation when decoding with IMREAD_UNCHANGED."""
    if data[:2] == b"\xff\xd8":
        for marker, segment in _jpeg_header_segments(data):
            if marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
                return _tiff_orientation(segment[6:])
        return 1
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        position = 8
        while position + 8 <= len(data):
            length = struct.unpack(">I", data[position:position + 4])[0]
            kind = data[position + 4:position + 8]
            if kind == b"eXIf":
                return _tiff_orientation(data[position + 8:position + 8 + length])
            if kind in (b"IDAT", b"IEND"):
                break
            position += 12 + length
    return 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a decoded image the way its EXIF orientation (1..8) says it should be displayed."""
    if orientation in (5, 6, 7, 8):
        image = np.swapaxes(image, 0, 1)  # transpose; the flips below complete each case
    flip_rows = orientation in (3, 4, 7, 8)
    flip_columns = orientation in (2, 3, 6, 7)
    if flip_rows:
        image = image[::-1]
    if flip_columns:
        image = image[:, ::-1]
    return np.ascontiguousarray(image) if orientation != 1 else image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        # 65535 -> 255 with rounding (x / 257), not the truncation `x >> 8` or a wrapping cast
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    raise DataError(f"unsupported pixel type {image.dtype} (only 8- and 16-bit images are read)")


def _composite_on_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend `color` over a white background with `alpha` (uint8); opaque images pass as they are."""
    if alpha.min() == 255:
        return color
    weight = alpha.astype(np.float32)[..., None] / 255.0
    blended = color.astype(np.float32) * weight + 255.0 * (1.0 - weight)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


# libjpeg decodes at 1/2, 1/4 or 1/8 scale in the DCT domain, much faster than at full size.
REDUCED_DECODE_FLAGS = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4,
                        2: cv2.IMREAD_REDUCED_COLOR_2}


def jpeg_reduction(data: bytes, reduce_to: int | None) -> int:
    """The largest JPEG decoding scale divisor (8, 4 or 2) that keeps both sides of the image at
    least `reduce_to` pixels; 1 (full size) when none does, for other formats, or for None."""
    size = jpeg_size(data) if reduce_to is not None else None
    if size is None:
        return 1
    short_side = min(size)
    return next((factor for factor in REDUCED_DECODE_FLAGS if short_side // factor >= reduce_to), 1)


def decode_to_bgr(data: bytes, reduce_to: int | None = None) -> np.ndarray:
    """Decode image file bytes to uint8 BGR HWC: gray is replicated, 16-bit scaled to 8-bit,
    transparency composited on white, EXIF orientation applied. Undecodable bytes: DataError.
    With `reduce_to`, a JPEG whose short side is at least twice that is decoded at a reduced
    scale (see `jpeg_reduction`), so its short side stays >= `reduce_to`."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    factor = jpeg_reduction(data, reduce_to)
    image = None
    if factor > 1:  # orientation is applied below, as for full-size images
        image = cv2.imdecode(buffer, REDUCED_DECODE_FLAGS[factor] | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None and buffer.size:  # full size (also when libjpeg cannot scale, e.g. lossless)
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"cannot decode image data ({len(data)} bytes, starts with {data[:8]!r}); "
                        "expected a JPEG, PNG, BMP, WebP or TIFF file")
    image = _to_uint8(image)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif channels == 2:  # gray + alpha
        gray = _composite_on_white(image[..., 0], image[..., 1])
        image = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    elif channels == 4:  # BGRA; a transparent pixel's colour is arbitrary, so it becomes white
        image = _composite_on_white(image[..., :3], image[..., 3])
    elif channels != 3:
        raise DataError(f"unsupported image with {channels} channels")
    return apply_orientation(np.ascontiguousarray(image), exif_orientation(data))


@TRANSFORMS.register
class DecodeImage:
    """Raw file bytes -> uint8 RGB (or BGR with to_rgb=False) HWC (CHW with channel_first).
    Transparent images are composited on white; 16-bit images are scaled to 8 bits.

    `reduce_to` (pixels, off by default): decode a JPEG at 1/2, 1/4 or 1/8 scale when its short
    side stays >= reduce_to, for sources much larger than the training size (set it to that
    size; the resize after it then starts from a smaller image). The pixels differ slightly from
    a full decode followed by the same resize, so train and evaluate with the same setting."""

    def __init__(self, to_rgb: bool = True, channel_first: bool = False,
                 reduce_to: int | None = None) -> None:
        if reduce_to is not None and (isinstance(reduce_to, bool) or not isinstance(reduce_to, int)
                                      or reduce_to < 1):
            raise ConfigError(f"DecodeImage reduce_to must be a positive number of pixels or null "
                              f"(full-size decoding), got {reduce_to!r}")
        self.to_rgb, self.channel_first, self.reduce_to = bool(to_rgb), bool(channel_first), reduce_to

    def __call__(self, data: bytes | bytearray | memoryview | np.ndarray,
                 rng: np.random.Generator | None = None) -> np.ndarray:
        if isinstance(data, np.ndarray):
            if data.dtype != np.uint8 or data.ndim != 1:
                raise TypeError("DecodeImage expects encoded file bytes (a 1-D uint8 array or bytes), "
                                f"got an array of shape {data.shape} and type {data.dtype}")
            data = data.tobytes()
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"DecodeImage expects encoded file bytes, got {type(data).__name__}")
        image = decode_to_bgr(bytes(data), self.reduce_to)
        if self.to_rgb:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return np.ascontiguousarray(image.transpose(2, 0, 1)) if self.channel_first else image


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
            name = names[int(_generator(rng).integers(len(names)))]
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
        if _generator(rng).random() >= self.prob:
            return image
        if self.flip_code in (0, -1):
            image = image[::-1]
        if self.flip_code in (1, -1):
            image = image[:, ::-1]
        return np.ascontiguousarray(image)


# ---------------------------------------------------------------------------- RandAugment
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
    `interpolation` is how Rotate, Shear and Translate resample (nearest, bilinear or bicubic):
    the PIL RandAugment of the official Q2L / ML-Decoder training uses PIL's default, nearest,
    which is also faster (README, Performance)."""

    def __init__(self, num_layers: int = 2, magnitude: float = 5, max_level: float = 10,
                 fillcolor: Sequence[int] | int = (128, 128, 128),
                 ops: Sequence[str] | None = None, interpolation: str = "bilinear") -> None:
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 0:
            raise ConfigError(f"num_layers must be an int >= 0, got {num_layers!r}")
        if isinstance(max_level, bool) or not isinstance(max_level, (int, float)) or max_level <= 0:
            raise ConfigError(f"max_level must be a positive number, got {max_level!r}")
        if (isinstance(magnitude, bool) or not isinstance(magnitude, (int, float))
                or not 0 <= magnitude <= max_level):
            raise ConfigError(f"magnitude must be a number in [0, max_level={max_level}], got {magnitude!r}")
        fill = [fillcolor] * 3 if isinstance(fillcolor, int) else list(fillcolor)
        if len(fill) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in fill):
            raise ConfigError(f"fillcolor must be an int or three ints in 0..255, got {fillcolor!r}")
        names = list(RANDAUGMENT_OPS) if ops is None else list(ops)
        unknown = [name for name in names if name not in RANDAUGMENT_OPS]
        if unknown or not names:
            raise ConfigError(f"ops must be a non-empty list of {', '.join(RANDAUGMENT_OPS)}; "
                              f"unknown: {unknown}")
        self.num_layers, self.level = num_layers, float(magnitude) / float(max_level)
        if interpolation not in WARP_INTERPOLATIONS:
            raise ConfigError(f"RandAugment interpolation must be one of "
                              f"{', '.join(WARP_INTERPOLATIONS)}, got {interpolation!r}")
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
        rng = _generator(rng)
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
        rng = _generator(rng)
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


# ---------------------------------------------------------------------------- to the model
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ConfigError(f"scale must be a positive number, got {value!r}")
    return float(value)


def _per_channel(values: Any, name: str, positive: bool) -> np.ndarray:
    if (not isinstance(values, (list, tuple)) or not values
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            or (positive and not all(v > 0 for v in values))):
        kind = "positive numbers" if positive else "numbers"
        raise ConfigError(f"{name} must be a list of {kind} (one per channel), got {values!r}")
    return np.asarray(values, dtype=np.float32)


@TRANSFORMS.register
class NormalizeImage:
    """(image * scale - mean) / std as float32; `order` says whether the image is HWC
    ('hwc' or '' as PaddleClas configs write) or already CHW ('chw')."""

    def __init__(self, scale: float | str = 1.0 / 255.0,
                 mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225), order: str = "hwc") -> None:
        self.scale = parse_scale(scale)
        self.mean = _per_channel(list(mean) if isinstance(mean, tuple) else mean, "mean", False)
        self.std = _per_channel(list(std) if isinstance(std, tuple) else std, "std", True)
        if len(self.mean) != len(self.std):
            raise ConfigError(f"mean and std need one value per channel each, got {len(self.mean)} "
                              f"and {len(self.std)}")
        if not isinstance(order, str) or order.lower() not in ("", "hwc", "chw"):
            raise ConfigError(f"order must be 'hwc' (or '') or 'chw', got {order!r}")
        self.channels_first = order.lower() == "chw"
        shape = (-1, 1, 1) if self.channels_first else (1, 1, -1)
        # one multiply and one subtract per pixel instead of three operations
        self.multiplier = (np.float32(self.scale) / self.std).reshape(shape)
        self.offset = (self.mean / self.std).reshape(shape)
        self._row_constants: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def row_constants(self, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The per-channel multiplier and offset repeated along one HWC image row (W * C values),
        made once per width. Broadcasting a C-long axis costs numpy several times more than
        broadcasting a whole row, and every element still gets exactly the same two operations."""
        if width not in self._row_constants:
            self._row_constants[width] = (np.tile(self.multiplier.ravel(), width),
                                          np.tile(self.offset.ravel(), width))
        return self._row_constants[width]

    def _check_layout(self, image: np.ndarray) -> None:
        channels = image.shape[0] if self.channels_first else image.shape[-1]
        if image.ndim != 3 or channels != len(self.mean):
            layout = "CHW" if self.channels_first else "HWC"
            raise ConfigError(f"NormalizeImage expects a {layout} image with {len(self.mean)} channels, "
                              f"got shape {image.shape}; check `order` and the op order")

    def normalize_to_chw(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """This op (HWC) and then ToCHWImage, in one pass: each channel plane is computed with the
        same float32 arithmetic as `__call__` directly into its place in a CHW array, so the
        result is identical and the float32 transpose is saved. Compose uses it for that pair."""
        if self.channels_first:
            raise ConfigError("normalize_to_chw needs NormalizeImage with order 'hwc'")
        self._check_layout(image)
        height, width, channels = image.shape
        result = np.empty((channels, height, width), dtype=np.float32)
        # cv2.split copies uint8 planes out faster than numpy reads the strided channel views
        if image.dtype == np.uint8 and image.size:
            planes = cv2.split(image)
        else:
            planes = [image[..., channel] for channel in range(channels)]
        for plane, out, multiplier, offset in zip(planes, result, self.multiplier.ravel(),
                                                  self.offset.ravel()):
            np.multiply(plane, multiplier, out=out, dtype=np.float32)
            out -= offset
        return result

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        self._check_layout(image)
        # float32 (image * multiplier) then minus offset, rounded after each step, in place
        result = image.astype(np.float32, order="C")
        if self.channels_first:
            result *= self.multiplier
            result -= self.offset
        else:
            multiplier, offset = self.row_constants(image.shape[1])
            rows = result.reshape(image.shape[0], image.shape[1] * image.shape[2])  # a view (C order)
            rows *= multiplier
            rows -= offset
        return result


@TRANSFORMS.register
class ToCHWImage:
    """HWC -> CHW (contiguous), the layout the model takes."""

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if image.ndim != 3:
            raise ConfigError(f"ToCHWImage expects an HWC image, got shape {image.shape}")
        return np.ascontiguousarray(image.transpose(2, 0, 1))


# ---------------------------------------------------------------------------------- building
def parse_op_entry(entry: Any, where: str, shape: str = ENTRY_SHAPE) -> tuple[str, dict[str, Any]]:
    """Split one `- OpName: {kwargs}` list entry into (name, kwargs); kwargs may be null."""
    return parse_component_entry(entry, where, shape)


def build_registered_ops(registry: Registry, entries: Any, where: str,
                         shape: str = ENTRY_SHAPE) -> list[Any]:
    """Construct each `- OpName: {kwargs}` entry of `entries` from `registry`; errors name the
    entry as `where.<index>`."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: expected a list of ops, each {shape}; got {entries!r}")
    ops = []
    for index, entry in enumerate(entries):
        place = f"{where}.{index}"
        name, kwargs = parse_op_entry(entry, place, shape)
        factory = registry.get(name, place)
        check_keywords(factory, kwargs, f"{place} {name}")
        try:
            ops.append(factory(**kwargs))
        except ConfigError as error:
            raise ConfigError(f"{place} {name}: {error}") from error
    return ops


def build_transforms(ops: list[dict] | None, where: str = "transform_ops") -> Compose:
    """A Compose of the TRANSFORMS listed as `[{DecodeImage: {to_rgb: True}}, {ToCHWImage: null}]`."""
    return Compose(build_registered_ops(TRANSFORMS, ops, where))
