"""RandAugment: every op changes an image at full strength and none at zero, draws repeat with the
same generator, nearest warps only move pixels, and Solarize's table equals its formula."""
import numpy as np
import pytest
from sample_images import textured_rgb

from ppq2l.data.transforms import RANDAUGMENT_OPS, RandAugment
from ppq2l.errors import ConfigError


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


@pytest.mark.parametrize("threshold", [0.0, 1.0, 127.5, 128.0, 179.2, 255.0, 256.0])
def test_solarize_inverts_exactly_the_pixels_at_or_above_the_threshold(threshold):
    image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    function = RANDAUGMENT_OPS["Solarize"][0]
    expected = np.where(image >= threshold, 255 - image, image)
    out = function(image, threshold, (128, 128, 128))
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out, expected)
