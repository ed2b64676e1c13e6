"""Compose, and building one from a `- OpName: {kwargs}` config list."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ppq2l.data.transforms.normalize import NormalizeImage
from ppq2l.data.transforms.operators import ToCHWImage, as_generator
from ppq2l.registry import TRANSFORMS

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
    return Compose(join_chw_output(TRANSFORMS.build_list(ops, where, ENTRY_SHAPE)))
