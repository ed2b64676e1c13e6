"""NormalizeImage, ToCHWImage and the device normalisation: the numbers of the plain formula bit
for bit in every layout and on every path, the one join of NormalizeImage with ToCHWImage, and
the scale keyword's fractions."""
import numpy as np
import pytest
import torch
from sample_images import textured_rgb

from ppq2l.data.device_normalize import DeviceNormalize
from ppq2l.data.transforms import Compose, NormalizeImage, RandomFlip, ToCHWImage, build_transforms, parse_scale
from ppq2l.data.transforms.compose import join_chw_output
from ppq2l.errors import ConfigError


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


LAYOUTS = ["contiguous", "flipped", "transposed", "float64", "one_channel", "four_channels", "empty"]
PATHS = ["hwc", "joined", "chw", "device"]


def image_in_layout(layout: str) -> np.ndarray:
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
    return image


def normalized_hwc(path: str, op: NormalizeImage, image: np.ndarray) -> np.ndarray:
    """`image` (HWC) through one normalisation path, returned as HWC."""
    if path == "hwc":
        return op(image)
    if path == "joined":  # HWC in, CHW out: NormalizeImage joined with the ToCHWImage after it
        joined = join_chw_output([op, ToCHWImage()])
        assert len(joined) == 1 and joined[0].chw_output
        out = joined[0](image)
        assert out.flags["C_CONTIGUOUS"]
        return out.transpose(1, 2, 0)
    chw = np.moveaxis(image, -1, 0)  # a strided view: the op must not rely on contiguity
    if path == "chw":
        return NormalizeImage(op.scale, op.mean.tolist(), op.std.tolist(), "chw")(chw).transpose(1, 2, 0)
    batch = torch.from_numpy(np.ascontiguousarray(chw))[None]  # uint8 on the training device
    return DeviceNormalize(op)(batch)[0].numpy().transpose(1, 2, 0)


@pytest.mark.parametrize("path, layout", [(path, layout) for path in PATHS for layout in LAYOUTS
                                          if not (path == "device" and layout == "float64")])
def test_every_normalisation_path_gives_the_plain_formula_bit_for_bit(path, layout):
    # One arithmetic: exactly float32(x) * (scale / std) - mean / std, whatever the memory layout
    # and whichever path (HWC rows, CHW planes written from HWC, CHW input, a uint8 batch on the
    # device, which normalize_on_device relies on), and the input stays untouched.
    image = image_in_layout(layout)
    before = image.copy()
    channels = image.shape[2]
    mean = np.array([0.4, 0.5, 0.6, 0.7][:channels], np.float32)
    std = np.array([0.2, 0.25, 0.3, 0.35][:channels], np.float32)
    op = NormalizeImage(scale="1.0/255.0", mean=mean.tolist(), std=std.tolist(), order="")
    expected = image.astype(np.float32) * (np.float32(1 / 255) / std) - mean / std
    for _ in range(2):  # the second call reuses the constants made for this width
        out = normalized_hwc(path, op, image)
        assert out.dtype == np.float32 and out.shape == image.shape
        np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(image, before)
    np.testing.assert_array_equal(normalized_hwc(path, op, image[:, :7]), expected[:, :7])  # another width


def test_building_joins_normalize_with_the_to_chw_right_after_it_and_nothing_else():
    built = build_transforms([{"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}])
    assert len(built) == 1 and isinstance(built.ops[0], NormalizeImage) and built.ops[0].chw_output
    chw_first = [ToCHWImage(), NormalizeImage(order="chw")]
    apart = [NormalizeImage(order=""), RandomFlip(prob=1.0), ToCHWImage()]
    for ops in (chw_first, apart):
        assert join_chw_output(ops) == ops
    assert not apart[0].chw_output  # joining copies the op, the one given keeps its HWC output
    image = textured_rgb()
    np.testing.assert_array_equal(Compose(chw_first)(image), Compose(apart)(image[:, ::-1]))
    np.testing.assert_array_equal(built(image), Compose(chw_first)(image))
    with pytest.raises(ConfigError, match="HWC image with 3 channels"):
        built(np.zeros((4, 4, 2), np.uint8))


@pytest.mark.parametrize("text,value", [("1.0/255.0", 1 / 255), ("1/255", 1 / 255), (" 2 / 4 ", 0.5),
                                        (".5/1", 0.5), (0.25, 0.25), (1, 1.0)])
def test_scale_accepts_numbers_and_fractions(text, value):
    assert parse_scale(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["255", "1/0", "1/255/2", "-1/255", "1.0/255.0 + 1", "__import__('os')",
                                  "1e-3/2", "one/255", "", -0.5, 0, True, None])
def test_scale_rejects_everything_else(text):
    with pytest.raises(ConfigError):
        parse_scale(text)
