"""Data pipeline: image transforms, batch transforms (CutMix), list-file datasets and the loader
builder. Importing the package registers every transform and dataset."""
from ppq2l.data import batch_transforms, dataloader, list_dataset, transforms
from ppq2l.data.dataloader import build_dataloader
from ppq2l.data.list_dataset import MultiLabelListDataset
from ppq2l.data.transforms import build_transforms

__all__ = ["batch_transforms", "dataloader", "list_dataset", "transforms", "build_dataloader",
           "build_transforms", "MultiLabelListDataset"]
