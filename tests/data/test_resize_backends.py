"""ResizeImage backend pil gives Pillow's resize exactly (the pixels torchvision's Resize makes of
a PIL image in the official Query2Label, ASL and ML-Decoder pipelines), in every layout the
pipeline hands it; backend cv2 stays OpenCV's non-antialiased resize."""
import cv2
import numpy as np
import pytest
from PIL import Image
from sample_images import textured_rgb

from ppq2l.data.transforms import ResizeImage
from ppq2l.errors import ConfigError

PIL_FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
               "bicubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX,
               "lanczos": Image.Resampling.LANCZOS, "hamming": Image.Resampling.HAMMING}


def photo_like(height=333, width=500, seed=1):
    """Fine detail that a non-antialiased downscale aliases."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    stripes = 127 + 120 * np.sin(x * 0.9 + y * 0.4)
    image = np.stack([stripes, np.roll(stripes, 7, axis=1), x * 255 / width], -1)
    return np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("interpolation", sorted(PIL_FILTERS))
@pytest.mark.parametrize("size", [224, [160, 96], 700])
def test_pil_backend_equals_pillow_resize(interpolation, size):
    image = photo_like()
    out = ResizeImage(size=size, interpolation=interpolation, backend="pil")(image)
    width, height = (size, size) if isinstance(size, int) else size
    expected = np.asarray(Image.fromarray(image).resize((width, height), PIL_FILTERS[interpolation]))
    assert out.dtype == np.uint8 and out.shape == (height, width, 3)
    np.testing.assert_array_equal(out, expected)


def test_pil_backend_equals_torchvision_resize_of_the_official_pipelines():
    transforms = pytest.importorskip("torchvision.transforms")
    image = photo_like()
    official = np.asarray(transforms.Resize((224, 224))(Image.fromarray(image)))
    np.testing.assert_array_equal(ResizeImage(size=224, backend="pil")(image), official)


def test_pil_backend_keeps_gray_layouts_and_short_side():
    gray = photo_like()[..., 0]
    expected = np.asarray(Image.fromarray(gray).resize((150, 100), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(ResizeImage(size=[150, 100], backend="pil")(gray), expected)
    out = ResizeImage(size=[150, 100], backend="pil")(gray[..., None])
    assert out.shape == (100, 150, 1)
    np.testing.assert_array_equal(out[..., 0], expected)
    assert ResizeImage(resize_short=64, backend="pil")(photo_like()).shape == (64, 96, 3)
    drawn = ResizeImage(size=32, interpolation="random", backend="pil")
    assert drawn(textured_rgb(), np.random.default_rng(0)).shape == (32, 32, 3)


def test_the_two_backends_differ_when_shrinking_and_cv2_is_unchanged():
    image = photo_like()
    ours = ResizeImage(size=224)(image)
    np.testing.assert_array_equal(ours, cv2.resize(image, (224, 224), interpolation=cv2.INTER_LINEAR))
    difference = np.abs(ours.astype(int) - ResizeImage(size=224, backend="pil")(image))
    assert difference.mean() > 1.0  # OpenCV does not antialias: not interchangeable


def test_pil_backend_refuses_float_images_with_the_fix():
    with pytest.raises(ConfigError, match="backend pil needs a uint8 image.*before NormalizeImage"):
        ResizeImage(size=8, backend="pil")(np.zeros((16, 16, 3), np.float32))
