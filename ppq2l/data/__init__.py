"""Data pipeline: image transforms, batch transforms (CutMix), datasets (list, CSV, COCO, VOC,
NUS-WIDE, OpenImages, shards) and the loader builder. Importing the package registers the image
transforms; the torch-based parts (batch transforms, datasets, loader) load on first use, so a
torch-free deploy predictor can import `ppq2l.data.transforms` and `ppq2l.data.label_map`."""
from __future__ import annotations

import importlib
from typing import Any

from ppq2l.data import label_map, transforms
from ppq2l.data.label_map import read_label_map
from ppq2l.data.transforms import build_transforms

# name -> module that defines it; each module imports torch, so it is loaded only when asked for
_LAZY_ATTRIBUTES = {
    "batch_transforms": "ppq2l.data.batch_transforms",
    "dataloader": "ppq2l.data.dataloader",
    "list_dataset": "ppq2l.data.list_dataset",
    "build_dataloader": "ppq2l.data.dataloader",
    "build_batch_transforms": "ppq2l.data.batch_transforms",
    "BatchCompose": "ppq2l.data.batch_transforms",
    "MultiLabelListDataset": "ppq2l.data.list_dataset",
    "coco_dataset": "ppq2l.data.coco_dataset",
    "csv_dataset": "ppq2l.data.csv_dataset",
    "CocoDataset": "ppq2l.data.coco_dataset",
    "CsvDataset": "ppq2l.data.csv_dataset",
    "VocDataset": "ppq2l.data.voc",
    "NusWideDataset": "ppq2l.data.nus_wide",
    "OpenImagesDataset": "ppq2l.data.openimages",
    "ShardedDataset": "ppq2l.data.sharded_dataset",
    "dataset_check": "ppq2l.data.dataset_check",
    "device_normalize": "ppq2l.data.device_normalize",
    "DeviceNormalize": "ppq2l.data.device_normalize",
    "DeviceLoader": "ppq2l.data.device_normalize",
}

__all__ = ["label_map", "transforms", "read_label_map", "build_transforms", *_LAZY_ATTRIBUTES]


def __getattr__(name: str) -> Any:
    """Import the torch-based module behind `name` on first access (PEP 562)."""
    module_name = _LAZY_ATTRIBUTES.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # the loader builds datasets by registry name, so importing it registers them as well
    importlib.import_module("ppq2l.data.dataloader")
    module = importlib.import_module(module_name)
    value = module if module_name.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_ATTRIBUTES))
