"""NormalizeImage and ToCHWImage: the numbers of the plain formula bit for bit in every layout,
and the scale keyword's fractions."""
import numpy as np
import pytest

from ppq2l.data.transforms import Compose, NormalizeImage, RandomFlip, ToCHWImage, parse_scale
from ppq2l.errors import ConfigError
from sample_images import textured_rgb


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
