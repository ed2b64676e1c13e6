"""Per-image preprocessing ops built from `- OpName: {kwargs}` lists (PaddleClas names and keywords);
importing this package registers every op."""
from __future__ import annotations

from ppq2l.data.transforms.operators import (RANDAUGMENT_OPS, Compose, CropImage, Cutout,
                                             DecodeImage, NormalizeImage, RandAugment, RandomFlip,
                                             ResizeImage, ToCHWImage, build_registered_ops,
                                             build_transforms, decode_to_bgr, jpeg_reduction,
                                             jpeg_size, parse_scale)

__all__ = ["RANDAUGMENT_OPS", "Compose", "CropImage", "Cutout", "DecodeImage", "NormalizeImage",
           "RandAugment", "RandomFlip", "ResizeImage", "ToCHWImage", "build_registered_ops",
           "build_transforms", "decode_to_bgr", "jpeg_reduction", "jpeg_size", "parse_scale"]
