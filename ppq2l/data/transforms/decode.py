"""DecodeImage: image file bytes to uint8 pixels (8-bit, three channels, transparency on white,
EXIF orientation applied), as a DataLoader worker and the deploy predictor both decode them."""
from __future__ import annotations

import struct
from typing import Iterator

import cv2
import numpy as np

from ppq2l.errors import ConfigError, DataError
from ppq2l.registry import TRANSFORMS


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

