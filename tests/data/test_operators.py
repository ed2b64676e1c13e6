"""Resize, crop, flip and Cutout do what their keywords say, reproduce their draws from the same
generator and refuse bad keywords."""
import numpy as np
import pytest

from ppq2l.data.transforms import CropImage, Cutout, RandomFlip, ResizeImage
from ppq2l.errors import ConfigError, DataError


def test_resize_squash_and_short_side():
    image = np.zeros((30, 60, 3), np.uint8)
    assert ResizeImage(size=20)(image).shape == (20, 20, 3)
    assert ResizeImage(size=[40, 10])(image).shape == (10, 40, 3)  # [w, h]
    assert ResizeImage(resize_short=15)(image).shape == (15, 30, 3)
    assert ResizeImage(resize_short=15, interpolation="random")(image, np.random.default_rng(0)).shape \
        == (15, 30, 3)


@pytest.mark.parametrize("kwargs", [{"size": 10, "interpolation": "cubic-ish"}, {}, {"size": 10, "resize_short": 5},
                                    {"size": [10]}, {"size": 0}, {"resize_short": 2.5},
                                    {"size": 10, "backend": "Pillow"},
                                    {"size": 10, "backend": "pil", "interpolation": "area"}])
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


def test_cutout_random_fill_and_several_holes():
    image = np.zeros((60, 60, 3), np.uint8)
    out = Cutout(n_holes=3, length=10)(image, np.random.default_rng(3))
    assert 100 <= np.count_nonzero(np.any(out != 0, axis=-1)) <= 300
    colours = {tuple(pixel) for pixel in out.reshape(-1, 3)} - {(0, 0, 0)}
    assert len(colours) >= 2  # a colour per hole
    with pytest.raises(ConfigError, match="uint8"):
        Cutout()(np.zeros((8, 8, 3), np.float32), np.random.default_rng(0))
