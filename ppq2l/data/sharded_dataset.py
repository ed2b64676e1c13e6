"""A dataset of tar shards written by tools/make_shards.py, for data too large for a folder of files
or stored elsewhere (any URL the shard reader opens): `{name: ShardedDataset, shards:
path/or/url/shards.json, transform_ops: [...]}`. The loader reads it in the order ShardSampler
draws (see ppq2l/data/shard_sampler.py): each process reads its own shards, every sample once per
epoch, and a resumed run continues at the batch it stopped at."""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Iterator, Sequence

import numpy as np
import torch.utils.data

from ppq2l.checks import flag, integer
from ppq2l.data.label_store import LabelCounts
from ppq2l.data.list_dataset import as_compose, transform_image
from ppq2l.data.shard_reader import (
    decode_labels,
    image_member,
    locate,
    read_manifest,
    read_piece,
    sample_key,
)
from ppq2l.data.shard_sampler import Piece
from ppq2l.data.transforms import Compose
from ppq2l.errors import ConfigError, DataError
from ppq2l.registry import DATASETS


class SampleNames(Sequence):
    """`<shard url>#<key>` of every sample, made when asked (a list would cost memory per sample)."""

    def __init__(self, shards: list[str], offsets: np.ndarray) -> None:
        self.shards, self.offsets = shards, offsets

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return f"{self.shards[int(locate(self.offsets, index)[0])]}#{sample_key(int(index))}"


@DATASETS.register
class ShardedDataset:
    """Samples of the shards listed in the manifest `shards`; `shuffle_window` samples are
    shuffled together in training and `readers` windows are read side by side (see
    ShardSampler); `skip_bad_images` drops undecodable images as the other datasets do."""

    def __init__(self, shards: str | os.PathLike, transform_ops: list[dict] | Compose | None, class_num: int,
                 shuffle_window: int = 1024, readers: int = 4, skip_bad_images: bool = False) -> None:
        self.manifest = read_manifest(os.fspath(shards))
        if self.manifest.class_num != class_num:
            raise ConfigError(f"the shards of {shards} have {self.manifest.class_num} classes but class_num "
                              f"is {class_num}")
        self.shuffle_window = integer(shuffle_window, "shuffle_window", minimum=1,
                                      why="samples shuffled together in training")
        self.readers = integer(readers, "readers", minimum=1, why="windows read side by side")
        self.skip_bad_images = flag(skip_bad_images, "skip_bad_images")
        self.transforms = as_compose(transform_ops)
        self.class_num = class_num
        self.class_names = self.manifest.class_names
        self.offsets = self.manifest.offsets
        self.image_paths = self.sources = SampleNames(self.manifest.shards, self.offsets)
        self._windows: OrderedDict[tuple[Piece, ...], dict[int, dict[str, bytes]]] = OrderedDict()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def label_counts(self) -> LabelCounts:
        """Per-class counts as make_shards recorded them (positives per sample are not kept)."""
        counts = self.manifest.label_counts
        arrays = [np.asarray(counts.get(key, [0] * self.class_num), dtype=np.int64)
                  for key in ("positives", "negatives", "unknown")]
        return LabelCounts(*arrays, np.zeros(0, dtype=np.int64))

    def _window(self, window: tuple[Piece, ...]) -> dict[int, dict[str, bytes]]:
        """The samples of `window`, read once; a loader worker keeps its readers / num_workers
        windows in use plus one (the least recently used beyond that is dropped)."""
        if window in self._windows:
            self._windows.move_to_end(window)
            return self._windows[window]
        samples = {}
        for shard, start, stop in window:
            for index, sample in read_piece(self.manifest.shards[shard], int(self.offsets[shard]), start, stop):
                samples[index] = sample
        self._windows[window] = samples
        info = torch.utils.data.get_worker_info()
        while len(self._windows) > -(-self.readers // (info.num_workers if info else 1)) + 1:
            self._windows.popitem(last=False)
        return samples

    def raw_sample(self, index: int, window: tuple[Piece, ...] | None = None) -> tuple[bytes, np.ndarray, str]:
        """(image bytes, int8 labels, source) of sample `index`, read with its `window` (alone
        when None: a whole shard prefix is passed over, so use windows for anything but a look)."""
        if window is None:
            shard, position = (int(value) for value in locate(self.offsets, index))
            window = ((shard, position, position + 1),)
        sample = self._window(window).get(index)
        where = self.image_paths[index]
        if sample is None:
            raise DataError(f"sample {where} is not in the shard pieces {window} read for it")
        labels, source = decode_labels(sample.get("json", b""), self.class_num, where)
        return image_member(sample, where), labels, f"{where} ({source})"

    def get(self, index: int, rng: np.random.Generator | None = None,
            window: tuple[Piece, ...] | None = None) -> tuple[Any, np.ndarray] | None:
        """Sample `index` transformed with `rng` (see MultiLabelImageDataset.get)."""
        data, labels, where = self.raw_sample(index, window)
        image = transform_image(self.transforms, data, rng, where, self.skip_bad_images)
        return None if image is None else (image, labels)

    def __getitem__(self, index: int) -> tuple[Any, np.ndarray]:
        return self.get(index)

    def iter_shards(self) -> Iterator[tuple[int, dict[str, bytes]]]:
        """Every sample in manifest order, each shard read once from front to back."""
        for shard, url in enumerate(self.manifest.shards):
            yield from read_piece(url, int(self.offsets[shard]), 0, int(self.manifest.counts[shard]))
