"""Normalisation on the training device (`loader: {normalize_on_device: true}`), and DeviceLoader,
the loader wrapper that hands the model its input on its device.

A float32 image is four times the bytes of the uint8 one it comes from, and every batch crosses
from a loader worker to the training process through shared memory, then to pinned memory and the
GPU. With this option the workers stop before NormalizeImage and hand over uint8 CHW batches;
DeviceLoader moves each batch to the device and applies the same NormalizeImage there, with the
op's own constants and arithmetic (`normalize_in_place`), so the model gets bit-for-bit the
tensor the workers would have made. CutMix pastes pixels, which commutes with a per-pixel
normalisation, so it runs on the uint8 batch unchanged.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch

from ppq2l.data.transforms import Compose, NormalizeImage, ToCHWImage
from ppq2l.data.transforms.compose import join_chw_output
from ppq2l.data.transforms.normalize import normalize_in_place
from ppq2l.errors import ConfigError


class DeviceNormalize:
    """NormalizeImage for a uint8 batch [B, C, H, W] on any device: returns float32, keeping the
    batch's memory format (channels-last stays channels-last)."""

    def __init__(self, normalize: NormalizeImage, where: str = "NormalizeImage") -> None:
        self.normalize, self.where = normalize, where
        self.constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def constants_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The op's per-channel multiplier and offset as float32 [C, 1, 1] tensors on `device`."""
        if device not in self.constants:
            self.constants[device] = tuple(
                torch.from_numpy(values.copy()).reshape(-1, 1, 1).to(device)
                for values in (self.normalize.multiplier, self.normalize.offset))
        return self.constants[device]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ConfigError(f"{self.where}: normalize_on_device needs uint8 [B, C, H, W] batches, got "
                              f"{tuple(images.shape)} {images.dtype}; a batch transform must keep uint8 "
                              "images, or turn normalize_on_device off")
        multiplier, offset = self.constants_on(images.device)
        if images.shape[1] != multiplier.shape[0]:
            raise ConfigError(f"{self.where}: NormalizeImage has mean/std for {multiplier.shape[0]} "
                              f"channels but the images have {images.shape[1]}")
        return normalize_in_place(images.to(torch.float32), multiplier, offset)

    def __repr__(self) -> str:
        return f"DeviceNormalize(multiplier={self.normalize.multiplier.tolist()}, " \
               f"offset={self.normalize.offset.tolist()})"


def split_device_normalization(transforms: Compose, where: str) -> tuple[Compose, DeviceNormalize]:
    """`transforms` without its final normalisation, and that normalisation for the device.

    The list must end with NormalizeImage (order hwc) then ToCHWImage, or with NormalizeImage
    (order chw); anything else is a ConfigError naming the ops found. The workers' pipeline then
    ends with the uint8 image in CHW layout."""
    ops = join_chw_output(transforms.ops)
    last = ops[-1] if ops else None
    if not (isinstance(last, NormalizeImage) and last.chw_output):
        found = ", ".join(type(op).__name__ for op in transforms.ops[-2:]) or "no ops"
        raise ConfigError(f"{where}.loader.normalize_on_device needs {where}.dataset.transform_ops to "
                          f"end with NormalizeImage then ToCHWImage (or NormalizeImage with order: chw), "
                          f"so that the workers can stop before normalising; it ends with {found}")
    kept = ops[:-1] if last.channels_first else [*ops[:-1], ToCHWImage()]
    return Compose(kept), DeviceNormalize(last, f"{where}.dataset.transform_ops")


class DeviceLoader:
    """A loader of `(images, targets)` batches whose images arrive on `device` in `memory_format`
    as the model takes them, in the manner of timm's PrefetchLoader: a loader built with
    normalize_on_device hands over uint8 batches and names their normalisation in its
    `device_normalize`, which runs here, on the device. Targets pass as they are."""

    def __init__(self, loader: Iterable, device: torch.device,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        self.loader, self.device, self.memory_format = loader, device, memory_format
        self.normalize: DeviceNormalize | None = getattr(loader, "device_normalize", None)

    def model_input(self, images: torch.Tensor) -> torch.Tensor:
        """One batch's images on the device in the memory format, normalised there if needed."""
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        return images if self.normalize is None else self.normalize(images)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Any]]:
        for images, targets in self.loader:
            yield self.model_input(images), targets

    def __len__(self) -> int:
        return len(self.loader)


def to_model_input(images: torch.Tensor, loader: Any, device: torch.device,
                   memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """One batch of `loader` as `DeviceLoader(loader, device, memory_format)` yields it."""
    return DeviceLoader(loader, device, memory_format).model_input(images)
