"""Building pipelines from config lists: a reproducible pipeline, errors that name the entry, and
a package that a deploy predictor without torch can import."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sample_images import encode, textured_rgb

from ppq2l.data.transforms import build_transforms
from ppq2l.errors import ConfigError


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
    # each op's own checks, located at the entry: the key, what would be right, what was given
    ([{"CropImage": None}], r"^Train\.ops\.0 CropImage needs size$"),
    ([{"ResizeImage": {"size": [10]}}], r"^Train\.ops\.0 ResizeImage: size must be a list of 2 positive "
                                        r"integers, like \[448, 448\] \(width, height\), got \[10\]$"),
    ([{"ResizeImage": {"size": 0}}], r"size must be a positive integer \(or a \[width, height\] list\), got 0$"),
    ([{"ResizeImage": {"size": 8, "interpolation": "bilinar"}}],
     r"interpolation must be one of nearest, bilinear, .*random, got 'bilinar'\. Did you mean 'bilinear'\?$"),
    ([{"ResizeImage": {"size": 8, "backend": "PIL"}}],
     r"backend must be one of cv2, pil, got 'PIL'\. Did you mean 'pil'\?$"),
    ([{"ResizeImage": {"size": 8, "backend": "pil", "interpolation": "area"}}],
     r"interpolation \(backend pil\) must be one of nearest, bilinear, bicubic, box, lanczos, hamming, "
     r"random, got 'area'"),
    ([{"DecodeImage": {"to_rgb": "yes"}}], r"^Train\.ops\.0 DecodeImage: to_rgb must be true or false, got 'yes'$"),
    ([{"DecodeImage": {"reduce_to": 0}}], r"reduce_to must be a positive integer or null \(pixels; null decodes "
                                          r"at full size\), got 0$"),
    ([{"RandomFlip": {"flip_code": True}}], r"^Train\.ops\.0 RandomFlip: flip_code must be an integer from -1 to "
                                            r"1 \(1 horizontal, 0 vertical, -1 both\), got True$"),
    ([{"RandFlipImage": {"prob": 1.5}}], r"^Train\.ops\.0 RandFlipImage: prob must be a number from 0 to 1, got 1\.5$"),
    ([{"RandAugment": {"magnitude": 11}}], r"magnitude must be a number from 0 to 10 \(the strength out of "
                                           r"max_level 10\), got 11$"),
    ([{"RandAugment": {"ops": ["Rotate", "Invertt"]}}], r"each of ops must be one of Identity, .*got 'Invertt'"),
    ([{"RandAugment": {"ops": []}}], r"RandAugment: ops must be a non-empty list of Identity, .*got \[\]$"),
    ([{"RandAugment": {"fillcolor": True}}], r"fillcolor must be an integer from 0 to 255 \(or a list of three\)"),
    ([{"RandAugment": {"fillcolor": [1, 2]}}], r"fillcolor must be a list of 3 integers from 0 to 255"),
    ([{"Cutout": {"n_holes": 0}}], r"^Train\.ops\.0 Cutout: n_holes must be a positive integer, got 0$"),
    ([{"Cutout": {"fill": "black"}}], r"Cutout: fill must be a finite number \(or 'random'\), got 'black'$"),
    ([{"Cutout": {"fact": 0}}], r"Cutout: fact must be a number in \(0, 1\] \(of the image's short side\), got 0$"),
    ([{"NormalizeImage": {"mean": "0.5"}}], r"NormalizeImage: mean must be a list of one or more finite numbers, "
                                            r"like \[0\.485, 0\.456, 0\.406\] \(one per channel\), got '0\.5'$"),
    ([{"NormalizeImage": {"std": [0.2, 0, 0.2]}}], r"std must be a list of one or more finite numbers > 0"),
    ([{"NormalizeImage": {"order": "whc"}}], r"order must be one of hwc, chw, got 'whc'\. Did you mean 'hwc'\?$"),
    ([{"NormalizeImage": {"mean": [0.5], "std": [0.5, 0.5]}}], r"need one value per channel each, got 1 and 2$"),
])
def test_build_transforms_errors_name_the_entry(ops, message):
    with pytest.raises(ConfigError, match=message):
        build_transforms(ops, "Train.ops")
