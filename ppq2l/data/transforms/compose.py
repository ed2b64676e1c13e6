"""Compose, and building one from a `- OpName: {kwargs}` config list."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ppq2l.data.transforms.normalize import NormalizeImage
from ppq2l.data.transforms.operators import ToCHWImage, as_generator
from ppq2l.errors import ConfigError
from ppq2l.registry import TRANSFORMS, Registry, check_keywords, parse_component_entry

ENTRY_SHAPE = "a one-key mapping such as `- ResizeImage: {size: 224}` (keywords may be empty)"


class Compose:
    """Applies ops in order, handing each the same generator; `Compose(ops)(image, rng)`.
    `ops` is fixed at construction (a tuple)."""

    def __init__(self, ops: Sequence[Callable[..., np.ndarray]]) -> None:
        self.ops = tuple(ops)

    def __call__(self, image: Any, rng: np.random.Generator | None = None) -> Any:
        rng = as_generator(rng)
        for op in self.ops:
            image = op(image, rng)
        return image

    def __len__(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        return f"Compose({', '.join(type(op).__name__ for op in self.ops)})"


def parse_op_entry(entry: Any, where: str, shape: str = ENTRY_SHAPE) -> tuple[str, dict[str, Any]]:
    """Split one `- OpName: {kwargs}` list entry into (name, kwargs); kwargs may be null."""
    return parse_component_entry(entry, where, shape)


def build_registered_ops(registry: Registry, entries: Any, where: str,
                         shape: str = ENTRY_SHAPE) -> list[Any]:
    """Construct each `- OpName: {kwargs}` entry of `entries` from `registry`; errors name the
    entry as `where.<index>`."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: expected a list of ops, each {shape}; got {entries!r}")
    ops = []
    for index, entry in enumerate(entries):
        place = f"{where}.{index}"
        name, kwargs = parse_op_entry(entry, place, shape)
        factory = registry.get(name, place)
        check_keywords(factory, kwargs, f"{place} {name}")
        try:
            ops.append(factory(**kwargs))
        except ConfigError as error:
            raise ConfigError(f"{place} {name}: {error}") from error
    return ops


def join_chw_output(ops: Sequence[Any]) -> list[Any]:
    """`ops` with each NormalizeImage on HWC images that a ToCHWImage directly follows joined with
    it into one op that writes CHW (`NormalizeImage.writing_chw`): the same numbers, without
    transposing a float32 copy. Building a pipeline does this; it is the only place that does."""
    joined: list[Any] = []
    for op in ops:
        if (isinstance(op, ToCHWImage) and joined and isinstance(joined[-1], NormalizeImage)
                and not joined[-1].chw_output):
            joined[-1] = joined[-1].writing_chw()
        else:
            joined.append(op)
    return joined


def build_transforms(ops: list[dict] | None, where: str = "transform_ops") -> Compose:
    """A Compose of the TRANSFORMS listed as `[{DecodeImage: {to_rgb: True}}, {ToCHWImage: null}]`
    (a NormalizeImage and the ToCHWImage after it run as one op, see `join_chw_output`)."""
    return Compose(join_chw_output(build_registered_ops(TRANSFORMS, ops, where)))
