"""Build a DataLoader from a `DataLoader.Train` / `DataLoader.Eval` config section.

Reproducibility: the sampler draws, from (seed, epoch), both the order of the samples and one seed
per sample. Each sample's transforms use a numpy Generator made from its own seed, and a batch's
transforms (CutMix) use one made from the seeds of its samples, so the same seed and epoch give the
same batches whatever `num_workers` is. `set_epoch(epoch)` picks the epoch (a resumed run repeats
the epochs it continues); without it, each new pass over the loader moves to the next epoch.

Failures: an error while loading reaches the caller as the one clean error it was, from worker
processes too, and a killed worker as a sentence (see ppq2l/data/loader_workers.py).
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from ppq2l.checks import check_keys, choice, flag, integer
from ppq2l.data import coco_dataset, csv_dataset, nus_wide, openimages, voc  # noqa: F401 - registers them
from ppq2l.data.batch_transforms import BatchCompose, build_batch_transforms
from ppq2l.data.device_normalize import DeviceNormalize, split_device_normalization
from ppq2l.data.list_dataset import as_compose
from ppq2l.data.loader_workers import (
    LoadFailure,
    describe_worker_death,
    ignore_stop_signals,
    stop_workers,
    track_workers,
)
from ppq2l.data.shard_sampler import ShardSampler
from ppq2l.data.sharded_dataset import ShardedDataset
from ppq2l.errors import ConfigError, DataError, Ppq2lError
from ppq2l.registry import DATASETS

SECTION_KEYS = ("dataset", "sampler", "loader", "batch_transform_ops")
SAMPLER_KEYS = ("name", "batch_size", "shuffle", "drop_last")
# The one sampler there is (SeededSampler) shards the samples across the processes of a
# distributed run, which is what PaddleClas calls DistributedBatchSampler; `name` may say so.
SAMPLER_NAME = "DistributedBatchSampler"
LOADER_KEYS = ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor",
               "use_shared_memory", "normalize_on_device")
TRAIN_MODE = "Train"


def check_sampler_name(name: Any, where: str) -> None:
    """Accept a missing `sampler.name` or the one that describes SeededSampler; refuse the rest.
    BatchSampler gets its own reason: accepting it would silently do what the other name does."""
    if name == "BatchSampler":
        raise ConfigError(f"{where}.sampler.name: BatchSampler (each process reads every sample) is "
                          f"not available: the sampler always shards the samples across the "
                          f"processes of a distributed run, as {SAMPLER_NAME} does; write name: "
                          f"{SAMPLER_NAME} or leave name out")
    if name is not None:
        choice(name, f"{where}.sampler.name", [SAMPLER_NAME])


class SeededSampler(Sampler):
    """Yields `(index, sample_seed)` pairs in an order drawn from (seed, epoch); shards the order
    across `num_replicas` processes. With `pad` (training) the order is padded by repetition so
    every process gets as many samples; without it (evaluation) each sample goes to exactly one
    process and the shards may differ in length by one."""

    def __init__(self, num_samples: int, shuffle: bool, seed: int,
                 num_replicas: int | None = None, rank: int | None = None, pad: bool = True) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        self.num_replicas = num_replicas or (dist.get_world_size() if distributed else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is outside 0..{self.num_replicas - 1}")
        self.num_samples, self.shuffle, self.pad = num_samples, shuffle, pad
        self.seed = seed & 0xFFFF_FFFF_FFFF_FFFF  # SeedSequence takes non-negative ints
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Use `epoch` for the next pass (then count on from it), leaving out its first `skip`
        samples of this process (those a resumed run already trained on)."""
        self.epoch, self.skip = int(epoch), int(skip)

    def __len__(self) -> int:
        if self.pad:
            return -(-self.num_samples // self.num_replicas)
        return len(range(self.rank, self.num_samples, self.num_replicas))

    def shard(self) -> tuple[np.ndarray, np.ndarray]:
        """This process's `(indices, sample_seeds)` for the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.num_samples) if self.shuffle else np.arange(self.num_samples)
        seeds = rng.integers(0, 2 ** 63 - 1, size=self.num_samples, dtype=np.int64)
        if self.pad:
            total = -(-self.num_samples // self.num_replicas) * self.num_replicas
            order, seeds = np.resize(order, total), np.resize(seeds, total)  # cyclic padding
        return order[self.rank::self.num_replicas], seeds[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices, seeds = self.shard()
        skip, self.skip = self.skip, 0
        self.epoch += 1
        for index, seed in zip(indices[skip:], seeds[skip:]):
            yield int(index), int(seed)


class SeededSampleDataset(Dataset):
    """Wraps a dataset with `get(index, rng)` so that `(index, seed)` keys from SeededSampler
    (`(index, seed, window)` from ShardSampler) load `(image, labels, seed)`; other attributes
    (`labels`, `image_paths`) come from the wrapped one."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple) -> tuple[Any, np.ndarray, int] | LoadFailure | None:
        index, seed, *where = key  # ShardSampler adds the window that holds the sample
        try:
            sample = self.dataset.get(index, np.random.default_rng(seed), *where)
        except Ppq2lError as error:  # the main process raises it again (see loader_workers)
            return LoadFailure(error)
        return None if sample is None else (*sample, seed)  # None: a skipped bad image

    def __getattr__(self, name: str) -> Any:
        # dunder lookups (pickling, DataLoader's __getitems__ probe) must not reach the wrapped set
        if name.startswith("__") or name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class BatchCollator:
    """Stacks `(image, labels, seed)` samples into tensors `(images [B, 3, H, W], targets [B, C])`,
    float32 images (uint8 with `uint8_images`, for normalisation on the device) and int8 targets
    (1, 0, -1 unknown), and applies the batch transforms with a generator seeded by the samples
    (their targets are float32, soft where CutMix mixed them, -1 where unknown)."""

    def __init__(self, batch_transforms: BatchCompose | None, where: str,
                 uint8_images: bool = False) -> None:
        self.batch_transforms, self.where, self.uint8_images = batch_transforms, where, uint8_images

    def check(self, images: Sequence[Any]) -> None:
        """ConfigError unless every image is a float (or, for `uint8_images`, uint8) CHW array of
        the first image's shape."""
        first = images[0]
        for position, image in enumerate(images):
            ok = (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape == first.shape
                  and (image.dtype == np.uint8 if self.uint8_images
                       else np.issubdtype(image.dtype, np.floating)))
            if not ok:
                described = (f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray)
                             else type(image).__name__)
                expected = ("uint8 CHW arrays of one size before NormalizeImage (normalize_on_device)"
                            if self.uint8_images else "float CHW arrays of one size")
                raise ConfigError(
                    f"{self.where}.dataset.transform_ops: samples must come out as {expected}, "
                    f"but sample 0 is {getattr(first, 'shape', '?')} "
                    f"{getattr(first, 'dtype', type(first).__name__)} and sample {position} is "
                    f"{described}; end the list with a fixed-size ResizeImage (or CropImage), "
                    "NormalizeImage and ToCHWImage")

    def __call__(self, samples: Sequence[tuple[Any, np.ndarray, int] | LoadFailure | None]
                 ) -> tuple[torch.Tensor, torch.Tensor] | LoadFailure:
        """The batch, or the first sample's LoadFailure (or the collation's own) in its place."""
        for sample in samples:
            if isinstance(sample, LoadFailure):
                return sample
        try:
            return self.collate(samples)
        except Ppq2lError as error:  # e.g. check() in a worker process
            return LoadFailure(error)

    def collate(self, samples: Sequence[tuple[Any, np.ndarray, int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack the samples (None ones dropped) and apply the batch transforms."""
        samples = [sample for sample in samples if sample is not None]  # skip_bad_images drops
        if not samples:  # every image of the batch was unreadable
            return torch.empty(0, 3, 1, 1, dtype=torch.uint8 if self.uint8_images else torch.float32), \
                torch.empty(0, 0)
        images, labels, seeds = zip(*samples)
        self.check(images)
        batch = np.stack(images)
        batch = torch.from_numpy(batch if self.uint8_images else batch.astype(np.float32, copy=False))
        targets = torch.from_numpy(np.stack(labels).astype(np.int8, copy=False))
        if self.batch_transforms:
            # mixing makes soft targets: float32, with -1 still marking unknown labels
            batch, targets = self.batch_transforms(batch, targets.float(), np.random.default_rng(list(seeds)))
        return batch, targets


class SeededDataLoader(DataLoader):
    """A DataLoader whose `set_epoch(epoch)` makes the epoch's order and augmentation reproducible.
    `device_normalize` is None, or (with `normalize_on_device`) the DeviceNormalize that turns its
    uint8 batches into the model's input on the device; `DeviceLoader(loader, device)` applies it."""

    device_normalize: DeviceNormalize | None = None
    where = "DataLoader"  # the config section, for errors

    def __iter__(self) -> Iterator[Any]:
        """The batches; an error from loading (in a worker or not) is raised here as the one
        clean Ppq2lError it was, and a dead worker as a WorkerDiedError."""
        batches = super().__iter__()
        track_workers(batches)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except RuntimeError as error:
                died = describe_worker_death(error, self.where, self.num_workers)
                if died is None:
                    raise
                self._stop_workers(batches)
                raise died from None
            if isinstance(batch, LoadFailure):
                self._stop_workers(batches)
                batch.reraise()
            yield batch

    def _stop_workers(self, batches: Any) -> None:
        # Now, while the queues still work: left to the garbage collector, the stop request can
        # be lost and each worker waited for, then (as it ignores SIGTERM) left running.
        stop_workers(batches)
        if self._iterator is batches:  # persistent workers: a new pass starts new ones
            self._iterator = None

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Draw the next pass's order and per-sample seeds from (seed, epoch); leave out its
        first `skip_batches` batches (already trained on before a mid-epoch checkpoint)."""
        self.sampler.set_epoch(epoch, skip_batches * int(self.batch_size or 1))


def build_dataset(dataset_cfg: Any, class_num: int, where: str) -> Any:
    """The dataset named in `dataset_cfg`, its transforms built with errors located under `where`."""
    name, kwargs = DATASETS.parse_mapping(dataset_cfg, where, registered_only=False,
                                          example="{name: MultiLabelListDataset, image_root: ..., "
                                                  "cls_label_path: ..., transform_ops: [...]}")
    DATASETS.get(name, f"{where}.name")
    if "class_num" in kwargs:
        if kwargs.pop("class_num") != class_num:
            raise ConfigError(f"{where}.class_num is {dataset_cfg['class_num']!r} but the model has "
                              f"{class_num} classes (Arch.class_num); remove it or make them agree")
    if "transform_ops" in kwargs:
        kwargs["transform_ops"] = as_compose(kwargs["transform_ops"], f"{where}.transform_ops")
    return DATASETS.build(name, kwargs, where=where, class_num=class_num)


def build_dataloader(section: dict, mode: str, class_num: int, seed: int = 0,
                     use_cuda: bool = False) -> SeededDataLoader:
    """A DataLoader for `DataLoader.<mode>` yielding `(images float32 [B, 3, H, W], targets int8
    [B, C])` (1, 0, -1 unknown; float32 after `batch_transform_ops`, Train only, which run in the
    collate function). With `loader.normalize_on_device` the images are uint8, and DeviceLoader
    normalises them on the training device. A ShardedDataset is read in ShardSampler's order."""
    where = f"DataLoader.{mode}"
    section = check_keys(section, SECTION_KEYS, where)
    if "dataset" not in section:
        raise ConfigError(f"{where}.dataset is missing: give its name and keywords")
    if "batch_transform_ops" in section and mode != TRAIN_MODE:
        raise ConfigError(f"{where}.batch_transform_ops: batch transforms such as CutMix change the "
                          f"labels, so they only run in {TRAIN_MODE}; remove them from {mode}")
    sampler_cfg = check_keys(section.get("sampler"), SAMPLER_KEYS, f"{where}.sampler")
    loader_cfg = check_keys(section.get("loader"), LOADER_KEYS, f"{where}.loader")

    check_sampler_name(sampler_cfg.get("name"), where)
    if "batch_size" not in sampler_cfg:
        raise ConfigError(f"{where}.sampler.batch_size is missing")
    sampler_path, loader_path = f"{where}.sampler", f"{where}.loader"  # named in errors
    batch_size = integer(sampler_cfg["batch_size"], f"{sampler_path}.batch_size", minimum=1)
    shuffle = flag(sampler_cfg.get("shuffle", False), f"{sampler_path}.shuffle")
    drop_last = flag(sampler_cfg.get("drop_last", False), f"{sampler_path}.drop_last")
    num_workers = integer(loader_cfg.get("num_workers", 0), f"{loader_path}.num_workers", minimum=0)
    pin_memory = flag(loader_cfg.get("pin_memory", False), f"{loader_path}.pin_memory")
    persistent = flag(loader_cfg.get("persistent_workers", False), f"{loader_path}.persistent_workers")
    prefetch_factor = integer(loader_cfg.get("prefetch_factor", 2), f"{loader_path}.prefetch_factor",
                              minimum=1)
    on_device = flag(loader_cfg.get("normalize_on_device", False), f"{loader_path}.normalize_on_device")
    if not flag(loader_cfg.get("use_shared_memory", True), f"{loader_path}.use_shared_memory"):
        raise ConfigError(f"{where}.loader.use_shared_memory: PyTorch workers always hand batches over "
                          "in shared memory; remove the key or set it to True")

    dataset_cfg, device_normalize = section["dataset"], None
    if on_device and isinstance(dataset_cfg, dict):
        transforms = as_compose(dataset_cfg.get("transform_ops"), f"{where}.dataset.transform_ops")
        transforms, device_normalize = split_device_normalization(transforms, where)
        dataset_cfg = {**dataset_cfg, "transform_ops": transforms}
    dataset = build_dataset(dataset_cfg, class_num, f"{where}.dataset")
    if mode != TRAIN_MODE and getattr(dataset, "skip_bad_images", False):
        raise ConfigError(f"{where}.dataset.skip_bad_images: evaluation must score every sample; "
                          "find the bad images with tools/check_dataset.py and fix or remove them")
    batch_transforms = build_batch_transforms(section.get("batch_transform_ops"),
                                              f"{where}.batch_transform_ops")
    if isinstance(dataset, ShardedDataset):
        sampler = ShardSampler(dataset.manifest, shuffle, seed, batch_size, dataset.shuffle_window,
                               dataset.readers, pad=mode == TRAIN_MODE)
    else:
        sampler = SeededSampler(len(dataset), shuffle, seed, pad=mode == TRAIN_MODE)
    extra: dict[str, Any] = {}
    if num_workers > 0:  # these options only mean something with worker processes
        # ignore_stop_signals and nothing else: the main process handles SIGTERM, then stops the
        # workers. No cv2.setNumThreads: in a forked worker it can deadlock on the parent's
        # OpenCV thread-pool state. No seeding either (see the module doc).
        extra = {"persistent_workers": persistent, "prefetch_factor": prefetch_factor,
                 "worker_init_fn": ignore_stop_signals}
    loader = SeededDataLoader(
        SeededSampleDataset(dataset), batch_size=batch_size, sampler=sampler, drop_last=drop_last,
        num_workers=num_workers, collate_fn=BatchCollator(batch_transforms, where, on_device),
        pin_memory=pin_memory and use_cuda,
        generator=torch.Generator().manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF), **extra)
    loader.device_normalize, loader.where = device_normalize, where
    if len(loader) == 0:
        raise DataError(f"{where}: {len(dataset)} samples make no batch of {batch_size} with "
                        "drop_last=True; lower sampler.batch_size or set drop_last: False")
    return loader
