"""A dataset that reads a COCO instances json directly, with the labels and class order that
`ppq2l/utils/create_coco_multilabel_lists.py` writes into a list file (same function)."""
from __future__ import annotations

import os

import numpy as np

from ppq2l.checks import choice
from ppq2l.data.list_dataset import MultiLabelImageDataset, check_class_num, check_image_root
from ppq2l.data.transforms import Compose
from ppq2l.errors import ConfigError, DataError
from ppq2l.registry import DATASETS
from ppq2l.utils.create_coco_multilabel_lists import (
    CROWD_MODES,
    load_coco_annotations,
    multilabel_samples,
)


@DATASETS.register
class CocoDataset(MultiLabelImageDataset):
    """Images under `image_root` labelled by the COCO json `anno_path`: class k is the k-th
    category id in ascending order; images without a file are skipped with a warning, images
    without annotations are kept as all-zero rows unless `skip_empty`. Unknown labels (-1):
    `crowd: unknown` for a class annotated only by crowd regions in an image, and `unknown_key`,
    an image field listing the category ids unknown for that image."""

    def __init__(self, image_root: str | os.PathLike, anno_path: str | os.PathLike,
                 transform_ops: list[dict] | Compose | None, class_num: int,
                 skip_empty: bool = False, skip_bad_images: bool = False, crowd: str = "positive",
                 unknown_key: str | None = None) -> None:
        class_num = check_class_num(class_num)
        crowd = choice(crowd, "crowd", CROWD_MODES)
        if unknown_key is not None and (not isinstance(unknown_key, str) or not unknown_key):
            raise ConfigError(f"unknown_key must be the name of an image field of the json, such "
                              f"as unknown_category_ids, or null; got {unknown_key!r}")
        check_image_root(image_root)
        coco = load_coco_annotations(anno_path)
        categories = len(coco.getCatIds())
        if categories != class_num:
            raise ConfigError(f"{anno_path} has {categories} categories but class_num is {class_num}")
        found = multilabel_samples(coco, image_root, skip_empty, crowd, unknown_key)
        samples = found.samples
        if not samples:
            raise DataError(f"{anno_path}: no image can be used from image_root {image_root}: "
                            f"{found.skip_reasons()}")
        self.image_root, self.anno_path = str(image_root), str(anno_path)
        super().__init__([os.path.join(self.image_root, name) for name, _ in samples],
                         np.array([label for _, label in samples], dtype=np.int8),
                         [f"{name} in {anno_path}" for name, _ in samples], transform_ops,
                         skip_bad_images)
