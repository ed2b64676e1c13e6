"""DecodeImage: every decodable kind becomes uint8 RGB (gray, alpha, 16-bit, CMYK), EXIF
orientation is applied as OpenCV's display decode applies it, reduced JPEG decoding keeps the
short side, and undecodable bytes are a DataError."""
import io
import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest
from sample_images import encode

from ppq2l.data.transforms.decode import REDUCED_DECODE_FLAGS, DecodeImage, ImageHeader, jpeg_reduction, read_header
from ppq2l.errors import ConfigError, DataError


def test_decode_gray_png_becomes_three_equal_channels():
    gray = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    image = DecodeImage()(encode(gray))
    assert image.shape == (12, 10, 3) and image.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_decode_orders_channels_rgb_or_bgr():
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 0] = 200  # blue
    data = encode(bgr)
    assert tuple(DecodeImage(to_rgb=True)(data)[0, 0]) == (0, 0, 200)
    assert tuple(DecodeImage(to_rgb=False)(data)[0, 0]) == (200, 0, 0)
    assert DecodeImage(channel_first=True)(data).shape == (3, 4, 4)


def test_decode_rgba_png_composites_transparency_on_white():
    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[0, 0] = [0, 0, 255, 255]    # opaque red
    bgra[0, 1] = [17, 99, 3, 0]      # fully transparent: its colour must not show
    bgra[0, 2] = [0, 0, 0, 128]      # half-transparent black
    bgra[1] = [255, 0, 0, 255]       # opaque blue
    image = DecodeImage()(encode(bgra))
    assert image.shape == (2, 3, 3)
    assert tuple(image[0, 0]) == (255, 0, 0)
    assert tuple(image[0, 1]) == (255, 255, 255)
    assert tuple(image[0, 2]) == (127, 127, 127)  # 255 * (1 - 128/255)
    assert tuple(image[1, 0]) == (0, 0, 255)


def test_decode_gray_alpha_png():
    image_module = pytest.importorskip("PIL.Image")
    gray_alpha = np.zeros((2, 2, 2), np.uint8)
    gray_alpha[..., 0], gray_alpha[..., 1] = 40, 255
    gray_alpha[1, 1] = [40, 0]
    buffer = io.BytesIO()
    image_module.fromarray(gray_alpha, "LA").save(buffer, "PNG")
    image = DecodeImage()(buffer.getvalue())
    assert image.shape == (2, 2, 3)
    assert tuple(image[0, 0]) == (40, 40, 40) and tuple(image[1, 1]) == (255, 255, 255)


def test_decode_16_bit_png_scales_instead_of_truncating():
    gray = np.array([[65535, 65000], [32768, 0]], np.uint16)
    image = DecodeImage()(encode(gray))
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], [[255, 253], [128, 0]])
    color = np.zeros((2, 2, 3), np.uint16)
    color[..., 2] = 65535  # red in BGR order
    assert tuple(DecodeImage()(encode(color))[0, 0]) == (255, 0, 0)


def test_decode_cmyk_jpeg_to_rgb():
    image_module = pytest.importorskip("PIL.Image")
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[...] = [200, 60, 20]
    buffer = io.BytesIO()
    image_module.fromarray(rgb).convert("CMYK").save(buffer, "JPEG", quality=100)
    image = DecodeImage()(buffer.getvalue())
    assert image.shape == (16, 16, 3)
    np.testing.assert_allclose(image[8, 8].astype(int), [200, 60, 20], atol=6)


def exif_block(orientation: int) -> bytes:
    """A big-endian TIFF block with one IFD entry: Orientation."""
    return (b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
            + struct.pack(">HHI", 0x0112, 3, 1) + struct.pack(">HH", orientation, 0)
            + struct.pack(">I", 0))


def with_jpeg_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    return jpeg[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def with_jpeg_exif(jpeg: bytes, orientation: int) -> bytes:
    return with_jpeg_segment(jpeg, 0xE1, b"Exif\x00\x00" + exif_block(orientation))


def with_png_exif(png: bytes, orientation: int) -> bytes:
    block = exif_block(orientation)
    chunk = struct.pack(">I", len(block)) + b"eXIf" + block + struct.pack(">I", zlib.crc32(b"eXIf" + block))
    return png[:33] + chunk + png[33:]  # after the signature and IHDR


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_opencv_display_decode(orientation):
    stored = np.zeros((24, 40, 3), np.uint8)
    stored[:6, :10] = 255  # a marker in one corner shows rotations and mirrors apart
    stored[-4:, 15:20] = [0, 0, 255]
    for data in (with_jpeg_exif(encode(stored, ".jpg"), orientation),
                 with_png_exif(encode(stored), orientation)):
        expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # applies EXIF
        image = DecodeImage(to_rgb=False)(data)
        assert image.shape == expected.shape
        np.testing.assert_array_equal(image, expected)
    if orientation in (5, 6, 7, 8):
        assert image.shape[:2] == (40, 24)


def smooth_bgr(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)],
                    -1).astype(np.uint8)


@pytest.mark.parametrize("progressive", [0, 1])
def test_read_header_gives_the_stored_size_and_the_exif_orientation(progressive):
    ok, buffer = cv2.imencode(".jpg", smooth_bgr(37, 53), [cv2.IMWRITE_JPEG_PROGRESSIVE, progressive])
    assert read_header(with_jpeg_exif(buffer.tobytes(), 6)) == ImageHeader("JPEG", (53, 37), 6)
    assert read_header(buffer.tobytes()) == ImageHeader("JPEG", (53, 37), 1)
    assert read_header(with_png_exif(encode(smooth_bgr(37, 53)), 8)) == ImageHeader("PNG", (53, 37), 8)
    assert read_header(encode(smooth_bgr(37, 53), ".bmp")) == ImageHeader(None, None, 1)
    for broken in (buffer.tobytes()[:40], b"\xff\xd8\xff\xe1\x00", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40):
        assert read_header(broken) == ImageHeader(None, None, 1)


def test_only_a_readable_exif_orientation_turns_the_image():
    # XMP's orientation is not EXIF's (OpenCV's display decode ignores it too), and a corrupt
    # EXIF block counts as none, without a warning that would not say which file it came from.
    stored = np.zeros((24, 40, 3), np.uint8)
    stored[:6, :10] = 255
    jpeg = encode(stored, ".jpg")
    xmp = b'http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    no_orientation = b"Exif\x00\x00MM\x00\x2a" + struct.pack(">IH", 8, 1) + struct.pack(">HHI", 0x010F, 2, 4) \
        + b"cam\x00" + struct.pack(">I", 0)
    corrupt = b"Exif\x00\x00" + exif_block(6)[:12] + struct.pack(">HHI", 0x0112, 3, 900)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for data in (with_jpeg_segment(with_jpeg_segment(jpeg, 0xE1, xmp), 0xE1, no_orientation),
                     with_jpeg_segment(jpeg, 0xE1, corrupt)):
            assert read_header(data).orientation == 1
            expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            np.testing.assert_array_equal(DecodeImage(to_rgb=False)(data), expected)
            assert expected.shape == (24, 40, 3)


@pytest.mark.parametrize("height, width, reduce_to, factor", [
    (400, 640, 50, 8), (400, 640, 100, 4), (400, 640, 101, 2), (400, 640, 200, 2), (400, 640, 201, 1)])
def test_reduced_jpeg_decoding_keeps_the_short_side_at_least_reduce_to(height, width, reduce_to, factor):
    data = encode(smooth_bgr(height, width), ".jpg")
    assert jpeg_reduction(read_header(data), reduce_to) == factor
    image = DecodeImage(to_rgb=False, reduce_to=reduce_to)(data)
    assert image.shape == (-(-height // factor), -(-width // factor), 3)
    assert min(image.shape[:2]) >= reduce_to
    full = DecodeImage(to_rgb=False)(data)
    if factor == 1:
        np.testing.assert_array_equal(image, full)
    else:  # libjpeg's scaled decode as OpenCV gives it, close to an area downscale of the full one
        np.testing.assert_array_equal(image, cv2.imdecode(np.frombuffer(data, np.uint8),
                                                          REDUCED_DECODE_FLAGS[factor]))
        shrunk = cv2.resize(full, image.shape[1::-1], interpolation=cv2.INTER_AREA)
        assert np.abs(image.astype(int) - shrunk).mean() < 2.0


def test_reduced_decoding_applies_exif_orientation_and_leaves_other_formats_alone():
    stored = smooth_bgr(200, 320)
    stored[:40, :60] = 255  # a corner marker shows the rotation
    data = with_jpeg_exif(encode(stored, ".jpg"), 6)
    reduced = DecodeImage(to_rgb=False, reduce_to=50)(data)
    full = DecodeImage(to_rgb=False)(data)
    assert full.shape == (320, 200, 3) and reduced.shape == (80, 50, 3)
    shrunk = cv2.resize(full, (50, 80), interpolation=cv2.INTER_AREA)
    assert np.abs(reduced.astype(int) - shrunk).mean() < 3.0
    png = encode(stored)
    np.testing.assert_array_equal(DecodeImage(reduce_to=50)(png), DecodeImage()(png))
    for bad in (0, -4, 2.5, True, "448"):
        with pytest.raises(ConfigError, match="reduce_to"):
            DecodeImage(reduce_to=bad)


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_undecodable_bytes_raise_data_error(data):
    with pytest.raises(DataError, match="cannot decode"):
        DecodeImage()(data)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_transpose_false_keeps_the_stored_pixels_as_pillow_reads_them(orientation):
    # The official PyTorch pipelines decode with PIL Image.open(...).convert("RGB"), which never
    # turns an image; PaddleClas's cv2.imdecode(data, 1) does. Both are available.
    from PIL import Image

    stored = np.zeros((24, 40, 3), np.uint8)
    stored[:6, :10] = 255
    for data in (with_jpeg_exif(encode(stored, ".jpg"), orientation),
                 with_png_exif(encode(stored), orientation)):
        as_stored = DecodeImage(exif_transpose=False)(data)
        np.testing.assert_array_equal(as_stored, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        assert as_stored.shape == (24, 40, 3)
        turned = DecodeImage()(data)
        np.testing.assert_array_equal(turned, cv2.imdecode(np.frombuffer(data, np.uint8),
                                                           cv2.IMREAD_COLOR)[..., ::-1])
        assert not np.array_equal(turned, as_stored) if orientation == 3 else turned.shape == (40, 24, 3)
    reduced = DecodeImage(to_rgb=False, reduce_to=10, exif_transpose=False)(
        with_jpeg_exif(encode(smooth_bgr(200, 320), ".jpg"), orientation))
    assert reduced.shape == (25, 40, 3)
    with pytest.raises(ConfigError, match="exif_transpose must be true or false, got 'no'"):
        DecodeImage(exif_transpose="no")
