"""Building pipelines from config lists: a reproducible pipeline, errors that name the entry, and
a package that a deploy predictor without torch can import."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ppq2l.data.transforms import build_transforms
from ppq2l.errors import ConfigError
from sample_images import encode, textured_rgb


def test_transforms_package_runs_without_torch():
    # A deploy predictor imports and runs these ops where torch is not installed.
    repo = Path(__file__).resolve().parents[2]
    code = ("import sys\n"
            "sys.modules['torch'] = None  # any import of torch now raises ImportError\n"
            "import cv2, numpy as np\n"
            "from ppq2l.data.transforms import build_transforms\n"
            "ops = [{'DecodeImage': None}, {'ResizeImage': {'size': 16}}, {'RandAugment': None},\n"
            "       {'Cutout': None}, {'NormalizeImage': None}, {'ToCHWImage': None}]\n"
            "data = cv2.imencode('.jpg', np.full((40, 30, 3), 90, np.uint8))[1].tobytes()\n"
            "assert build_transforms(ops)(data).shape == (3, 16, 16)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


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
