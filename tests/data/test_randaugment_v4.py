"""RandAugmentV4 is the RandAugment of the official Query2Label / ASL / ML-Decoder training, the pip
`randaugment` 1.0.2 package: every op at every magnitude and sign gives the package's pixels, and
the policy leaves as many images unchanged as the package does (about 30 %), where ours
(RandAugment, always two ops) leaves almost none. The package is a test requirement only
(requirements-test.txt); the comparisons skip, saying so, where it is not installed."""
import random

import numpy as np
import pytest
from PIL import Image
from sample_images import textured_rgb

from ppq2l.data.transforms import RandAugment, RandAugmentV4, build_transforms
from ppq2l.data.transforms.randaugment_v4 import OPS, SIGNED, apply_op, cutout_box
from ppq2l.errors import ConfigError


def photo_like(height=48, width=64, seed=2):
    """Texture over the whole 0..255 range with a bright and a dark block (non-square, so a
    swapped width and height shows)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 / width, y * 255 / height, 127 + 100 * np.sin(x * 0.7 + y * 0.3)], -1)
    image = image + rng.normal(0, 18, image.shape)
    image[5:15, 30:50] = [250, 245, 240]
    image[30:40, 5:20] = [5, 10, 20]
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def package(monkeypatch):
    """The `randaugment` package, made importable on numpy >= 1.24 (its ranges use `np.int`)."""
    module = pytest.importorskip("randaugment.randaugment", reason="pip install randaugment==1.0.2 "
                                 "(requirements-test.txt) to compare with the official policy")
    monkeypatch.setattr(np, "int", int, raising=False)
    return module


def package_op(package, monkeypatch, image, name, index, sign, centre):
    """The package's op `name` at `index`, with its random sign and Cutout centre fixed."""
    monkeypatch.setattr(random, "choice", lambda sequence: sign)
    draws = iter(centre)
    monkeypatch.setattr(np.random, "randint", lambda *args, **kwargs: next(draws))
    policy = package.SubPolicy(1.0, name, index, 0.0, name, index)  # op 1 always, op 2 never
    return np.asarray(policy(Image.fromarray(image)))


@pytest.mark.parametrize("name", OPS)
def test_every_op_at_every_magnitude_and_sign_gives_the_package_pixels(name, package, monkeypatch):
    image = photo_like()
    signs = (1, -1) if name in SIGNED else (1,)
    centres = [(20, 7), (0, 0), (63, 47)] if name == "Cutout" else [(0, 0)]
    for index in range(1, 10):
        for sign in signs:
            for centre in centres:
                expected = package_op(package, monkeypatch, image, name, index, sign, centre)
                ours = np.asarray(apply_op(Image.fromarray(image), name, index, sign, centre))
                difference = np.abs(ours.astype(int) - expected.astype(int)).max()
                assert difference <= 1, (name, index, sign, centre, difference)
                np.testing.assert_array_equal(ours, expected)  # in fact bit for bit


def test_the_geometry_is_the_package_s_not_ours():
    # shear about the top-left corner with bicubic resampling, rotation in one direction only
    image = photo_like()
    sheared = np.asarray(apply_op(Image.fromarray(image), "ShearX", 9, 1)).astype(int)
    moved = np.abs(sheared - image).mean(axis=(1, 2))
    assert moved[0] * 3 < moved[-1]  # rows shift in proportion to their distance from the top
    left = np.asarray(apply_op(Image.fromarray(image), "Rotate", 5, 1))
    assert np.array_equal(left, np.asarray(apply_op(Image.fromarray(image), "Rotate", 5, -1)))


def test_unchanged_images_are_as_frequent_as_with_the_package(package):
    image, draws = photo_like(32, 40), 1500
    random.seed(0)
    np.random.seed(0)
    official = package.RandAugment()
    theirs = np.mean([np.array_equal(np.asarray(official(Image.fromarray(image))), image)
                      for _ in range(draws)])
    rng = np.random.default_rng(0)
    augment = RandAugmentV4()
    ours = np.mean([np.array_equal(augment(image, rng), image) for _ in range(draws)])
    before = RandAugment(interpolation="nearest")  # the zoo's op until now: two ops, always
    old = np.mean([np.array_equal(before(image, rng), image) for _ in range(draws)])
    assert 0.25 <= theirs <= 0.40 and abs(ours - theirs) < 0.05, (ours, theirs)
    assert old < 0.05, old


def test_the_policy_draws_two_of_fifteen_ops_at_magnitudes_one_to_nine_half_the_time():
    rng = np.random.default_rng(0)
    draws = [item for _ in range(20000) for item in RandAugmentV4.draw(rng)]
    names, indices, applied = zip(*draws)
    assert set(names) == set(OPS) and len(OPS) == 15 and "Identity" not in OPS
    counts = np.array([names.count(name) for name in OPS]) / len(names)
    assert np.abs(counts - 1 / 15).max() < 0.01
    assert set(indices) == set(range(1, 10))
    assert abs(np.mean(applied) - 0.5) < 0.01


def test_paddleclas_cutout_is_a_black_square_of_twice_the_strength():
    image = photo_like()
    out = np.asarray(apply_op(Image.fromarray(image), "Cutout", 9, centre=(30, 20), cutout="paddleclas"))
    hole = np.zeros(image.shape[:2], bool)
    hole[20 - 20:20 + 20, 30 - 20:30 + 20] = True  # strength 20 at index 9, side 40, clipped
    assert (out[hole] == 0).all()
    np.testing.assert_array_equal(out[~hole], image[~hole])
    assert cutout_box((64, 48), 20, (64, 48), "paddleclas") == (44, 28, 64, 48)  # centre may be w, h
    assert cutout_box((64, 48), 7, (10, 10), "randaugment") == (7, 7, 13, 13)  # side 2 * (7 // 2)


def test_draws_repeat_with_the_generator_and_the_input_is_checked():
    image = textured_rgb()
    augment = build_transforms([{"RandAugmentV4": {}}])
    first = [augment(image, np.random.default_rng(seed)) for seed in range(6)]
    again = [augment(image, np.random.default_rng(seed)) for seed in range(6)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.uint8 and a.shape == image.shape
    with pytest.raises(ConfigError, match="before NormalizeImage"):
        RandAugmentV4()(image.astype(np.float32))
    with pytest.raises(ConfigError, match=r"cutout must be one of randaugment, paddleclas, got 'tf'"):
        build_transforms([{"RandAugmentV4": {"cutout": "tf"}}])
