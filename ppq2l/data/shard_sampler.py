"""The order in which a sharded dataset is read in an epoch, drawn from (seed, epoch) alone, so it
is the same whatever the number of loader workers, and a resumed run continues at the batch it
stopped at (the resume granularity is the batch, as for folder datasets).

The epoch's stream is the shards in a shuffled order, each read front to back. Like the folder
sampler, training pads the stream by repeating its first samples (fewer than the number of
processes) so that every process gets as many samples; process r then reads the r-th contiguous
part of it, so each process opens only its own shards (and at most two it shares), and every
sample is read once per epoch across the processes. A process's part is cut into windows of
`shuffle_window` samples (rounded up to whole batches); each window is read into memory once and
its samples are shuffled; `readers` windows are read side by side, their batches taking turns, so
that with `num_workers` dividing `readers` every worker reads windows of its own and no window is
read twice. Evaluation reads the same windows unshuffled and unpadded, each sample by exactly one
process (the evaluator puts the scores back in dataset order)."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

from ppq2l.data.shard_reader import Manifest, locate

Piece = tuple[int, int, int]  # (shard, first position, position after the last)


def pieces_of(indices: np.ndarray, offsets: np.ndarray) -> tuple[Piece, ...]:
    """The runs of consecutive positions within one shard that the sample `indices` (in stream
    order) fall into: what must be read to have them all."""
    shard, position = locate(offsets, indices)
    breaks = np.flatnonzero((shard[1:] != shard[:-1]) | (position[1:] != position[:-1] + 1)) + 1
    starts, stops = np.r_[0, breaks], np.r_[breaks, len(indices)]
    return tuple((int(shard[a]), int(position[a]), int(position[b - 1]) + 1) for a, b in zip(starts, stops))


class ShardSampler(Sampler):
    """Yields `(index, sample_seed, window)` for this process in the epoch's order; `window` lists
    the shard pieces of the sample's window, which the dataset reads (once) to serve it. Same
    interface as SeededSampler: `set_epoch(epoch, skip)`, `shard()`, `len()`."""

    def __init__(self, manifest: Manifest, shuffle: bool, seed: int, batch_size: int, shuffle_window: int,
                 readers: int, num_replicas: int | None = None, rank: int | None = None, pad: bool = True) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        self.num_replicas = num_replicas or (dist.get_world_size() if distributed else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        self.offsets, self.num_samples = manifest.offsets, int(manifest.offsets[-1])
        self.shuffle, self.pad, self.readers = shuffle, pad, readers
        self.window = -(-shuffle_window // batch_size) * batch_size
        self.batch_size = batch_size
        self.seed = seed & 0xFFFF_FFFF_FFFF_FFFF
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Use `epoch` for the next pass, leaving out its first `skip` samples of this process."""
        self.epoch, self.skip = int(epoch), int(skip)

    def __len__(self) -> int:
        if self.pad:
            return -(-self.num_samples // self.num_replicas)
        return self._bounds()[1] - self._bounds()[0]

    def _bounds(self) -> tuple[int, int]:
        """This process's part of the (padded) stream."""
        if self.pad:
            per = -(-self.num_samples // self.num_replicas)
            return self.rank * per, (self.rank + 1) * per
        return (self.num_samples * self.rank // self.num_replicas,
                self.num_samples * (self.rank + 1) // self.num_replicas)

    def plan(self) -> tuple[np.ndarray, np.ndarray, list[tuple[Piece, ...]], np.ndarray]:
        """This process's `(indices, seeds, windows, window of each sample)` for the epoch, in order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        shards = len(self.offsets) - 1
        order = rng.permutation(shards) if self.shuffle else np.arange(shards)
        stream = np.concatenate([np.arange(self.offsets[s], self.offsets[s + 1]) for s in order])
        seeds = rng.integers(0, 2 ** 63 - 1, size=self.num_samples, dtype=np.int64)
        if self.pad:
            stream = np.resize(stream, -(-self.num_samples // self.num_replicas) * self.num_replicas)
        begin, end = self._bounds()
        mine = stream[begin:end]
        windows = [mine[start:start + self.window] for start in range(0, len(mine), self.window)]
        keys = [pieces_of(window, self.offsets) for window in windows]
        if self.shuffle:
            windows = [np.random.default_rng([self.seed, self.epoch, self.rank, number]).permutation(window)
                       for number, window in enumerate(windows)]
        indices, owners = [], []
        for group in range(0, len(windows), self.readers):
            members = range(group, min(group + self.readers, len(windows)))
            longest = max(len(windows[number]) for number in members)
            for start in range(0, longest, self.batch_size):  # the group's windows take turns by batch
                for number in members:
                    chunk = windows[number][start:start + self.batch_size]
                    indices.append(chunk)
                    owners.append(np.full(len(chunk), number))
        indices = np.concatenate(indices) if indices else np.zeros(0, np.int64)
        owners = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        return indices, seeds[indices], keys, owners

    def shard(self) -> tuple[np.ndarray, np.ndarray]:
        """This process's `(indices, sample_seeds)` for the current epoch."""
        indices, seeds, _, _ = self.plan()
        return indices, seeds

    def __iter__(self) -> Iterator[tuple[int, int, tuple[Piece, ...]]]:
        indices, seeds, keys, owners = self.plan()
        skip, self.skip = self.skip, 0
        self.epoch += 1
        for index, seed, owner in zip(indices[skip:], seeds[skip:], owners[skip:]):
            yield int(index), int(seed), keys[owner]
