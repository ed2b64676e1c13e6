"""Image transforms: every decoded kind becomes uint8 RGB, each op does what its keywords say and
reproduces its draws from the same generator; CutMix mixes labels by the area it really pastes."""
import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ppq2l.data.batch_transforms import CutMix, build_batch_transforms
from ppq2l.data.transforms import (
    RANDAUGMENT_OPS,
    Compose,
    CropImage,
    Cutout,
    DecodeImage,
    NormalizeImage,
    RandAugment,
    RandomFlip,
    ResizeImage,
    ToCHWImage,
    build_transforms,
    jpeg_reduction,
    jpeg_size,
    parse_scale,
)
from ppq2l.errors import ConfigError, DataError


def encode(image: np.ndarray, extension: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(extension, image)
    assert ok
    return buffer.tobytes()


def textured_rgb(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth gradient with blocks: every RandAugment op visibly changes it."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1)
    image[8:20, 10:30] = [220, 30, 60]
    noise = np.random.default_rng(seed).integers(0, 20, image.shape)
    return np.clip(image + noise + 30, 0, 225).astype(np.uint8)


def test_transforms_module_runs_without_torch():
    # A deploy predictor reuses this module where torch is not installed
    module = Path(__file__).resolve().parents[2] / "ppq2l" / "data" / "transforms.py"
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('transforms', {str(module)!r})\n"
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
            "assert 'torch' not in sys.modules, 'transforms.py imported torch'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=module.parents[2], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------ decode
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


def with_jpeg_exif(jpeg: bytes, orientation: int) -> bytes:
    payload = b"Exif\x00\x00" + exif_block(orientation)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


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
def test_jpeg_size_reads_the_frame_header(progressive):
    ok, buffer = cv2.imencode(".jpg", smooth_bgr(37, 53), [cv2.IMWRITE_JPEG_PROGRESSIVE, progressive])
    assert jpeg_size(with_jpeg_exif(buffer.tobytes(), 6)) == (53, 37)  # stored size, not rotated
    assert jpeg_size(encode(smooth_bgr(37, 53))) is None  # PNG


@pytest.mark.parametrize("height, width, reduce_to, factor", [
    (400, 640, 50, 8), (400, 640, 100, 4), (400, 640, 101, 2), (400, 640, 200, 2), (400, 640, 201, 1)])
def test_reduced_jpeg_decoding_keeps_the_short_side_at_least_reduce_to(height, width, reduce_to, factor):
    data = encode(smooth_bgr(height, width), ".jpg")
    assert jpeg_reduction(data, reduce_to) == factor
    image = DecodeImage(to_rgb=False, reduce_to=reduce_to)(data)
    assert image.shape == (-(-height // factor), -(-width // factor), 3)
    assert min(image.shape[:2]) >= reduce_to
    full = DecodeImage(to_rgb=False)(data)
    if factor == 1:
        np.testing.assert_array_equal(image, full)
    else:  # the same picture, as an area-averaging downscale of the full decode would give it
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


# ------------------------------------------------------------------------------- geometry
def test_resize_squash_and_short_side():
    image = np.zeros((30, 60, 3), np.uint8)
    assert ResizeImage(size=20)(image).shape == (20, 20, 3)
    assert ResizeImage(size=[40, 10])(image).shape == (10, 40, 3)  # [w, h]
    assert ResizeImage(resize_short=15)(image).shape == (15, 30, 3)
    assert ResizeImage(resize_short=15, interpolation="random")(image, np.random.default_rng(0)).shape \
        == (15, 30, 3)


@pytest.mark.parametrize("kwargs", [{"size": 10, "interpolation": "cubic-ish"}, {}, {"size": 10, "resize_short": 5},
                                    {"size": [10]}, {"size": 0}, {"resize_short": 2.5},
                                    {"size": 10, "backend": "pil"}])
def test_resize_rejects_bad_keywords(kwargs):
    with pytest.raises(ConfigError):
        ResizeImage(**kwargs)


def test_center_crop_and_too_small_image():
    image = np.arange(6 * 8).reshape(6, 8, 1).astype(np.uint8)
    crop = CropImage([4, 2])(image)
    np.testing.assert_array_equal(crop[..., 0], image[2:4, 2:6, 0])
    with pytest.raises(DataError, match="smaller than the crop"):
        CropImage(10)(image)


def test_random_flip_directions_and_probability():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(RandomFlip(1, prob=1.0)(image, rng), image[:, ::-1])
    np.testing.assert_array_equal(RandomFlip(0, prob=1.0)(image, rng), image[::-1])
    np.testing.assert_array_equal(RandomFlip(-1, prob=1.0)(image, rng), image[::-1, ::-1])
    np.testing.assert_array_equal(RandomFlip(1, prob=0.0)(image, rng), image)
    flips = sum(not np.array_equal(RandomFlip()(image, rng), image) for _ in range(400))
    assert 150 < flips < 250
    with pytest.raises(ConfigError):
        RandomFlip(flip_code=2)


# ----------------------------------------------------------------------------- RandAugment
def test_randaugment_keeps_shape_and_type_and_repeats_with_the_same_generator():
    image = textured_rgb()
    augment = RandAugment(num_layers=3, magnitude=9)
    first = [augment(image, np.random.default_rng(seed)) for seed in range(8)]
    again = [augment(image, np.random.default_rng(seed)) for seed in range(8)]
    for a, b in zip(first, again):
        assert a.shape == image.shape and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
    assert len({a.tobytes() for a in first}) > 4  # different seeds, different draws


@pytest.mark.parametrize("name", [name for name in RANDAUGMENT_OPS if name != "Identity"])
def test_each_randaugment_op_changes_the_image_at_full_magnitude(name):
    image = textured_rgb()
    out = RandAugment(num_layers=1, magnitude=10, ops=[name])(image, np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)


def test_randaugment_at_magnitude_zero_leaves_the_image_alone():
    # Checks the direction of every range: solarize/posterize must be no-ops at 0, not at the maximum
    names = [name for name in RANDAUGMENT_OPS if name not in ("AutoContrast", "Equalize")]
    image = textured_rgb()
    augment = RandAugment(num_layers=4, magnitude=0, ops=names)
    for seed in range(10):
        np.testing.assert_array_equal(augment(image, np.random.default_rng(seed)), image)


@pytest.mark.parametrize("name", ["Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"])
def test_randaugment_nearest_geometric_ops_only_move_pixels(name):
    # Nearest-neighbour warps copy input pixels (or paint the fill); bilinear ones mix neighbours.
    image = np.zeros((48, 64, 3), np.uint8)
    image[::2, ::3] = (250, 10, 90)
    image[1::4] = (20, 200, 60)
    colours = {tuple(pixel) for pixel in image.reshape(-1, 3)} | {(128, 128, 128)}
    nearest = RandAugment(num_layers=1, magnitude=7.3, ops=[name], interpolation="nearest")
    bilinear = RandAugment(num_layers=1, magnitude=7.3, ops=[name], interpolation="bilinear")
    for seed in range(4):
        moved = nearest(image, np.random.default_rng(seed))
        assert {tuple(pixel) for pixel in moved.reshape(-1, 3)} <= colours
        blended = bilinear(image, np.random.default_rng(seed))
        assert not {tuple(pixel) for pixel in blended.reshape(-1, 3)} <= colours


def test_randaugment_rejects_float_images_and_bad_keywords():
    with pytest.raises(ConfigError, match="before NormalizeImage"):
        RandAugment()(np.zeros((8, 8, 3), np.float32), np.random.default_rng(0))
    with pytest.raises(ConfigError):
        RandAugment(magnitude=11)
    with pytest.raises(ConfigError):
        RandAugment(ops=["Invertt"])
    with pytest.raises(ConfigError, match="nearest, bilinear, bicubic.*'area'"):
        RandAugment(interpolation="area")


# --------------------------------------------------------------------------------- Cutout
def painted_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int]:
    rows, columns = np.nonzero(np.any(before != after, axis=-1))
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    assert len(rows) == (bottom - top) * (right - left)  # one filled rectangle
    return top, bottom, left, right


@pytest.mark.parametrize("kwargs,side", [({"fact": 0.5}, 40), ({"length": 13}, 13)])
def test_cutout_paints_a_square_of_the_stated_side_clipped_to_the_image(kwargs, side):
    image = np.full((80, 100, 3), 7, np.uint8)
    cutout = Cutout(fill=200, **kwargs)
    rng = np.random.default_rng(0)
    full = 0
    for _ in range(60):
        out = cutout(image, rng)
        top, bottom, left, right = painted_box(image, out)
        assert np.all(out[top:bottom, left:right] == 200)
        assert bottom - top == side or top == 0 or bottom == 80
        assert right - left == side or left == 0 or right == 100
        assert bottom - top <= side and right - left <= side
        full += (bottom - top) * (right - left) == side * side
    assert full > 10
    assert np.all(image == 7)  # the input is not modified


@pytest.mark.parametrize("shape, fill", [((50, 70, 3), "random"), ((50, 70, 3), 9), ((40, 30), 200)])
def test_cutout_equals_painting_the_drawn_squares_pixel_by_pixel(shape, fill):
    # The same draws from the same seed, painted with plain indexing, give the same image.
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    cutout = Cutout(n_holes=4, length=17, fill=fill)
    for seed in range(5):
        draws, expected = np.random.default_rng(seed), image.copy()
        for _ in range(4):
            center_y, center_x = int(draws.integers(shape[0])), int(draws.integers(shape[1]))
            colour = draws.integers(0, 256, size=shape[2:], dtype=np.uint8) if fill == "random" else fill
            for y in range(max(0, center_y - 8), min(shape[0], center_y + 9)):
                for x in range(max(0, center_x - 8), min(shape[1], center_x + 9)):
                    expected[y, x] = colour
        np.testing.assert_array_equal(cutout(image, np.random.default_rng(seed)), expected)


@pytest.mark.parametrize("threshold", [0.0, 1.0, 127.5, 128.0, 179.2, 255.0, 256.0])
def test_solarize_inverts_exactly_the_pixels_at_or_above_the_threshold(threshold):
    image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    function = RANDAUGMENT_OPS["Solarize"][0]
    expected = np.where(image >= threshold, 255 - image, image)
    out = function(image, threshold, (128, 128, 128))
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out, expected)


def test_cutout_random_fill_and_several_holes():
    image = np.zeros((60, 60, 3), np.uint8)
    out = Cutout(n_holes=3, length=10)(image, np.random.default_rng(3))
    assert 100 <= np.count_nonzero(np.any(out != 0, axis=-1)) <= 300
    colours = {tuple(pixel) for pixel in out.reshape(-1, 3)} - {(0, 0, 0)}
    assert len(colours) >= 2  # a colour per hole
    with pytest.raises(ConfigError, match="uint8"):
        Cutout()(np.zeros((8, 8, 3), np.float32), np.random.default_rng(0))


# ------------------------------------------------------------------------------ normalize
def test_normalize_numbers_and_layouts():
    image = np.zeros((2, 2, 3), np.uint8)
    image[0, 0] = [255, 0, 51]
    out = NormalizeImage(scale="1.0/255.0", order="")(image)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [(1 - 0.485) / 0.229, -0.456 / 0.224, (0.2 - 0.406) / 0.225],
                               rtol=1e-5)
    chw = ToCHWImage()(image)
    assert chw.shape == (3, 2, 2) and chw.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(NormalizeImage(order="chw")(chw), ToCHWImage()(out), rtol=1e-6)
    plain = NormalizeImage(scale=1, mean=[10, 20, 30], std=[2, 4, 5])(image)
    np.testing.assert_allclose(plain[0, 0], [(255 - 10) / 2, -20 / 4, (51 - 30) / 5])
    with pytest.raises(ConfigError, match="channels"):
        NormalizeImage(order="chw")(image)


@pytest.mark.parametrize("layout", ["contiguous", "flipped", "transposed", "float64", "empty"])
def test_normalize_is_bit_identical_to_the_plain_formula(layout):
    # The row-wise arithmetic must give exactly float32(x) * (scale / std) - mean / std, whatever
    # the memory layout of the input, and must leave the input untouched.
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    if layout == "flipped":
        image = image[::-1, ::-2]
    elif layout == "transposed":
        image = np.swapaxes(image, 0, 1)
    elif layout == "float64":
        image = image * 1.7
    elif layout == "empty":
        image = image[:0]
    before = image.copy()
    op = NormalizeImage(scale="1.0/255.0", order="")
    scale = np.float32(1 / 255)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    expected = image.astype(np.float32) * (scale / std) - mean / std
    for _ in range(2):  # the second call reuses the constants made for this width
        out = op(image)
        assert out.dtype == np.float32 and out.shape == image.shape
        np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(image, before)
    np.testing.assert_array_equal(op(image[:, :7]), expected[:, :7])  # another width


@pytest.mark.parametrize("layout", ["contiguous", "flipped", "transposed", "float64", "one_channel",
                                    "four_channels", "empty"])
def test_normalize_then_chw_in_one_step_equals_the_two_ops(layout):
    rng = np.random.default_rng(4)
    channels = {"one_channel": 1, "four_channels": 4}.get(layout, 3)
    image = rng.integers(0, 256, (29, 41, channels), dtype=np.uint8)
    if layout == "flipped":
        image = image[::-1, ::-3]
    elif layout == "transposed":
        image = np.swapaxes(image, 0, 1)
    elif layout == "float64":
        image = image * 0.37 - 5
    elif layout == "empty":
        image = image[:, :0]
    before = image.copy()
    mean, std = [0.4, 0.5, 0.6, 0.7][:channels], [0.2, 0.25, 0.3, 0.35][:channels]
    normalize = NormalizeImage(scale="1.0/255.0", mean=mean, std=std, order="")
    expected = ToCHWImage()(normalize(image))
    composed = Compose([normalize, ToCHWImage()])
    assert composed.steps == [normalize.normalize_to_chw]  # the pair runs as one step
    out = composed(image)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(image, before)
    with pytest.raises(ConfigError, match="HWC image with 3 channels"):
        Compose([NormalizeImage(order=""), ToCHWImage()])(np.zeros((4, 4, 2), np.uint8))


def test_compose_runs_other_op_sequences_one_op_at_a_time():
    chw_first = [ToCHWImage(), NormalizeImage(order="chw")]
    apart = [NormalizeImage(order=""), RandomFlip(prob=1.0), ToCHWImage()]
    for ops in (chw_first, apart):
        assert Compose(ops).steps == ops
    image = textured_rgb()
    np.testing.assert_array_equal(Compose(chw_first)(image), Compose(apart)(image[:, ::-1]))


@pytest.mark.parametrize("text,value", [("1.0/255.0", 1 / 255), ("1/255", 1 / 255), (" 2 / 4 ", 0.5),
                                        (".5/1", 0.5), (0.25, 0.25), (1, 1.0)])
def test_scale_accepts_numbers_and_fractions(text, value):
    assert parse_scale(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["255", "1/0", "1/255/2", "-1/255", "1.0/255.0 + 1", "__import__('os')",
                                  "1e-3/2", "one/255", "", -0.5, 0, True, None])
def test_scale_rejects_everything_else(text):
    with pytest.raises(ConfigError):
        parse_scale(text)


# ------------------------------------------------------------------------------- building
def test_build_transforms_runs_a_pipeline_reproducibly():
    ops = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 32}}, {"RandFlipImage": None},
           {"RandAugment": {}}, {"Cutout": {}}, {"NormalizeImage": {"scale": "1.0/255.0", "order": ""}},
           {"ToCHWImage": None}]
    pipeline = build_transforms(ops, "Infer.transforms")
    data = encode(textured_rgb())
    out = pipeline(data, np.random.default_rng(5))
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    np.testing.assert_array_equal(out, pipeline(data, np.random.default_rng(5)))
    assert len(build_transforms(None, "x")) == 0


@pytest.mark.parametrize("ops,message", [
    ([{"ResizeImage": {"size": 8}}, "ToCHWImage"], r"Train\.ops\.1: expected a one-key mapping"),
    ([{"ResizeImage": {"size": 8}, "ToCHWImage": None}], r"Train\.ops\.0: expected a one-key mapping"),
    ([{"ResizeImage": [8]}], r"Train\.ops\.0: the keywords of 'ResizeImage' must be a mapping"),
    ([{"ResizeImag": {"size": 8}}], r"Train\.ops\.0: unknown transform 'ResizeImag'.*ResizeImage"),
    ([{"ResizeImage": {"sise": 8}}], r"Train\.ops\.0 ResizeImage: unknown keyword 'sise'"),
    ([{"ResizeImage": {"size": 8, "interpolation": "bad"}}], r"Train\.ops\.0 ResizeImage: interpolation"),
    ({"ResizeImage": {"size": 8}}, r"Train\.ops: expected a list"),
])
def test_build_transforms_errors_name_the_entry(ops, message):
    with pytest.raises(ConfigError, match=message):
        build_transforms(ops, "Train.ops")


# --------------------------------------------------------------------------------- CutMix
def constant_batch(batch: int = 4, size: int = 20):
    """Image i is filled with i + 1 and labelled with class i only."""
    images = torch.arange(1, batch + 1, dtype=torch.float32).view(batch, 1, 1, 1).expand(batch, 3, size, size)
    return images.contiguous(), torch.eye(batch)


@pytest.mark.parametrize("seed", range(25))
def test_cutmix_mix_weights_labels_by_the_pasted_area(seed):
    images, targets = constant_batch()
    mixed, mixed_targets = CutMix(alpha=1.0, prob=1.0)(images, targets, np.random.default_rng(seed))
    area = images.shape[-1] * images.shape[-2]
    for i in range(4):
        values = mixed[i, 0].unique()
        pasted = [int(v) - 1 for v in values if int(v) != i + 1]
        assert len(pasted) <= 1 and torch.equal(mixed[i, 0], mixed[i, 2])
        if not pasted:
            assert torch.allclose(mixed_targets[i], targets[i])
            continue
        partner = pasted[0]
        fraction = float((mixed[i, 0] == partner + 1).sum()) / area
        assert mixed_targets[i, partner] == pytest.approx(fraction)
        assert mixed_targets[i, i] == pytest.approx(1 - fraction)
        assert float(mixed_targets[i].sum()) == pytest.approx(1.0)
    assert torch.equal(images, constant_batch()[0])  # the input batch is left as it was


def test_cutmix_union_keeps_both_label_sets_and_prob_zero_is_identity():
    images, targets = constant_batch()
    rng = np.random.default_rng(0)
    mixed, union = CutMix(prob=1.0, label_mode="union")(images, targets, rng)
    changed = [i for i in range(4) if not torch.equal(mixed[i], images[i])]
    assert changed
    for i in changed:
        partner = int(mixed[i, 0][mixed[i, 0] != i + 1][0]) - 1
        assert union[i, i] == 1 and union[i, partner] == 1 and union[i].sum() == 2
    same, same_targets = CutMix(prob=0.0)(images, targets, rng)
    assert same is images and same_targets is targets


def test_cutmix_is_reproducible_and_validated():
    images, targets = constant_batch()
    first = CutMix(prob=1.0)(images, targets, np.random.default_rng(9))
    second = CutMix(prob=1.0)(images, targets, np.random.default_rng(9))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    with pytest.raises(ConfigError, match="label_mode"):
        build_batch_transforms([{"CutMix": {"label_mode": "max"}}], "DataLoader.Train.batch_transform_ops")
    with pytest.raises(ConfigError, match="alpha"):
        CutMix(alpha=0)
