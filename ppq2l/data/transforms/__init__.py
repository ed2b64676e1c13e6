"""Per-image preprocessing ops built from `- OpName: {kwargs}` lists (PaddleClas names and keywords).

numpy, OpenCV and Pillow (image headers, its resize, RandAugmentV4) are used, not torch, so a
deploy predictor without torch can run the same pipeline.
Every op is called as `op(image, rng)`; ops that draw random numbers take them from `rng`, a
`np.random.Generator`. The DataLoader passes a generator seeded per sample, which makes a run
reproducible whatever the number of workers; with `rng=None` a fresh unseeded generator is used.

Modules by job: `decode` (file bytes to pixels), `operators` (resize, crop, flip, Cutout, CHW
layout), `randaugment` (ours, OpenCV), `randaugment_v4` (the official recipes' policy, Pillow),
`normalize` and `compose` (Compose and building from a config list).
Importing this package registers every op.
"""
from __future__ import annotations

from ppq2l.data.transforms.compose import Compose, build_transforms
from ppq2l.data.transforms.decode import DecodeImage, decode_to_bgr
from ppq2l.data.transforms.normalize import NormalizeImage, parse_scale
from ppq2l.data.transforms.operators import CropImage, Cutout, RandomFlip, ResizeImage, ToCHWImage
from ppq2l.data.transforms.randaugment import RANDAUGMENT_OPS, RandAugment
from ppq2l.data.transforms.randaugment_v4 import RandAugmentV4

__all__ = ["Compose", "build_transforms", "DecodeImage", "decode_to_bgr",
           "NormalizeImage", "parse_scale", "CropImage", "Cutout", "RandomFlip", "ResizeImage",
           "ToCHWImage", "RANDAUGMENT_OPS", "RandAugment", "RandAugmentV4"]
