"""DecodeImage: image file bytes to uint8 pixels (8-bit, three channels, transparency on white,
EXIF orientation applied unless asked not to), as a DataLoader worker and the deploy predictor
both decode them.

OpenCV decodes the pixels. Pillow reads what OpenCV's decoding call leaves out, from the header
alone: the stored size (to pick a reduced JPEG decoding scale) and the EXIF orientation."""
from __future__ import annotations

import io
import warnings
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, JpegImagePlugin, PngImagePlugin

from ppq2l.checks import flag, integer
from ppq2l.errors import DataError
from ppq2l.registry import TRANSFORMS

ORIENTATION_TAG = 0x0112
# Orientation is read from JPEG and PNG files only, as before Pillow read it (other formats are
# decoded as stored). The plugin classes read the header without decoding; unlike Image.open they
# skip the probing of every format and Pillow's decompression-bomb limit, which is for images
# Pillow decodes (OpenCV has its own). Cost: 15-35 us per JPEG header (50-85 us with an EXIF
# block), against 5 us for the hand-written parser this replaced: 1-2% (3-5%) of a 640x480
# image's eval pipeline, nothing next to decoding a phone photo.
HEADER_READERS = ((b"\xff\xd8", JpegImagePlugin.JpegImageFile),
                  (b"\x89PNG\r\n\x1a\n", PngImagePlugin.PngImageFile))


class ImageHeader(NamedTuple):
    """What a file's header says: its format ('JPEG', 'PNG' or None for others and unreadable
    headers), its stored (width, height) or None, and its EXIF orientation (1..8, 1 when none)."""
    format: str | None
    size: tuple[int, int] | None
    orientation: int


def read_header(data: bytes) -> ImageHeader:
    """The header of JPEG or PNG file bytes, read by Pillow without decoding the image; a header
    Pillow cannot read gives (None, None, 1) and OpenCV then decides whether the data decodes."""
    reader = next((reader for signature, reader in HEADER_READERS if data.startswith(signature)),
                  None)
    if reader is None:
        return ImageHeader(None, None, 1)
    # Pillow warns about a corrupt EXIF block (also while opening: it reads the resolution from
    # it) without naming the file; such a block counts as no orientation.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with reader(io.BytesIO(data)) as image:
                return ImageHeader(image.format, image.size, _exif_orientation(image.info.get("exif")))
        except (OSError, SyntaxError, ValueError):  # what Pillow raises for a corrupt header
            return ImageHeader(None, None, 1)


def _exif_orientation(exif: bytes | None) -> int:
    """The Orientation tag of an EXIF block's first directory (1..8); 1 when absent or invalid.
    EXIF only: Image.getexif would also take XMP's, which OpenCV's display decode ignores."""
    if not exif:
        return 1
    tags = Image.Exif()
    tags.load(exif)
    orientation = tags.get(ORIENTATION_TAG, 1)
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


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


def jpeg_reduction(header: ImageHeader, reduce_to: int | None) -> int:
    """The largest JPEG decoding scale divisor (8, 4 or 2) that keeps both sides of the image at
    least `reduce_to` pixels; 1 (full size) when none does, for other formats, or for None."""
    if reduce_to is None or header.format != "JPEG" or header.size is None:
        return 1
    short_side = min(header.size)
    return next((factor for factor in REDUCED_DECODE_FLAGS if short_side // factor >= reduce_to), 1)


def decode_to_bgr(data: bytes, reduce_to: int | None = None, exif_transpose: bool = True) -> np.ndarray:
    """Decode image file bytes to uint8 BGR HWC: gray is replicated, 16-bit scaled to 8-bit,
    transparency composited on white, EXIF orientation applied (kept as stored with
    `exif_transpose=False`). Undecodable bytes: DataError. With `reduce_to`, a JPEG whose short
    side is at least twice that is decoded at a reduced scale (see `jpeg_reduction`), so its
    short side stays >= `reduce_to`."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    header = read_header(data)
    factor = jpeg_reduction(header, reduce_to)
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
    image = np.ascontiguousarray(image)
    return apply_orientation(image, header.orientation) if exif_transpose else image


@TRANSFORMS.register
class DecodeImage:
    """Raw file bytes -> uint8 RGB (or BGR with to_rgb=False) HWC (CHW with channel_first).
    Transparent images are composited on white; 16-bit images are scaled to 8 bits.

    `reduce_to` (pixels, off by default): decode a JPEG at 1/2, 1/4 or 1/8 scale when its short
    side stays >= reduce_to, for sources much larger than the training size (set it to that
    size; the resize after it then starts from a smaller image). The pixels differ slightly from
    a full decode followed by the same resize, so train and evaluate with the same setting.

    `exif_transpose` (default true): turn the image as its EXIF orientation says, as PaddleClas's
    OpenCV decoding does; false keeps the stored pixel order, as the official Query2Label, ASL and
    ML-Decoder code reads images (PIL `Image.open(...).convert('RGB')`)."""

    def __init__(self, to_rgb: bool = True, channel_first: bool = False,
                 reduce_to: int | None = None, exif_transpose: bool = True) -> None:
        self.to_rgb, self.channel_first = flag(to_rgb, "to_rgb"), flag(channel_first, "channel_first")
        self.exif_transpose = flag(exif_transpose, "exif_transpose")
        self.reduce_to = integer(reduce_to, "reduce_to", minimum=1, allow_none=True,
                                 why="pixels; null decodes at full size")

    def __call__(self, data: bytes | bytearray | memoryview | np.ndarray,
                 rng: np.random.Generator | None = None) -> np.ndarray:
        if isinstance(data, np.ndarray):
            if data.dtype != np.uint8 or data.ndim != 1:
                raise TypeError("DecodeImage expects encoded file bytes (a 1-D uint8 array or bytes), "
                                f"got an array of shape {data.shape} and type {data.dtype}")
            data = data.tobytes()
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"DecodeImage expects encoded file bytes, got {type(data).__name__}")
        image = decode_to_bgr(bytes(data), self.reduce_to, self.exif_transpose)
        if self.to_rgb:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return np.ascontiguousarray(image.transpose(2, 0, 1)) if self.channel_first else image

