"""Ops applied to a whole collated batch `(images [B, 3, H, W], targets [B, C])`, such as CutMix,
built from `batch_transform_ops: [- CutMix: {alpha: 1.0, prob: 0.5}]`."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ppq2l.checks import choice, number
from ppq2l.registry import BATCH_TRANSFORMS

ENTRY_SHAPE = "a one-key mapping such as `- CutMix: {alpha: 1.0, prob: 0.5}`"
LABEL_MODES = ("mix", "union")


def cutmix_box(height: int, width: int, lam: float,
               rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box (top, bottom, left, right) of area about (1 - lam) * H * W at a random centre,
    clipped to the image (so its real area may be smaller)."""
    cut_ratio = float(np.sqrt(1.0 - lam))
    cut_height, cut_width = int(height * cut_ratio), int(width * cut_ratio)
    center_y, center_x = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = np.clip([center_y - cut_height // 2, center_y + cut_height // 2], 0, height)
    left, right = np.clip([center_x - cut_width // 2, center_x + cut_width // 2], 0, width)
    return int(top), int(bottom), int(left), int(right)


@BATCH_TRANSFORMS.register
class CutMix:
    """With probability `prob`, paste a box from a shuffled copy of the batch into each image.
    Labels: "mix" weights both label vectors by the pasted area, "union" keeps every label of both;
    unknown labels (-1) stay unknown (see `mix_targets`)."""

    def __init__(self, alpha: float = 1.0, prob: float = 0.5, label_mode: str = "mix") -> None:
        self.alpha = number(alpha, "alpha", above=0, why="of the Beta distribution")
        self.prob = number(prob, "prob", minimum=0, maximum=1)
        self.label_mode = choice(label_mode, "label_mode", LABEL_MODES)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        rng = rng if rng is not None else np.random.default_rng()
        if rng.random() >= self.prob or images.shape[0] < 2:
            return images, targets
        height, width = images.shape[-2:]
        lam = float(rng.beta(self.alpha, self.alpha))
        order = torch.from_numpy(rng.permutation(images.shape[0]))
        top, bottom, left, right = cutmix_box(height, width, lam, rng)
        pasted_area = (bottom - top) * (right - left)
        if pasted_area == 0:
            return images, targets
        mixed = images.clone()
        mixed[..., top:bottom, left:right] = images[order][..., top:bottom, left:right]
        return mixed, self.mix_targets(targets, targets[order], 1.0 - pasted_area / float(height * width))

    def mix_targets(self, own: torch.Tensor, pasted: torch.Tensor, kept: float) -> torch.Tensor:
        """Targets of images keeping a `kept` fraction of `own` and showing `pasted` in the rest.
        A label unknown (-1) in either image is unknown after mixing: its share of the mixed
        target cannot be known, so it never becomes a mixed 0. In union mode a positive in either
        image is positive whatever the other's label is."""
        unknown = (own < 0) | (pasted < 0)
        if self.label_mode == "union":
            union = torch.maximum(own, pasted)  # -1 is below every known value
            return torch.where(unknown & (union < 1), -1.0, union).to(own.dtype)
        # the weight follows the box actually pasted, which clipping may have made smaller
        return torch.where(unknown, -1.0, kept * own + (1.0 - kept) * pasted).to(own.dtype)


class BatchCompose:
    """Applies batch ops in order with one generator: `BatchCompose(ops)(images, targets, rng)`."""

    def __init__(self, ops: Sequence[Any]) -> None:
        self.ops = list(ops)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        rng = rng if rng is not None else np.random.default_rng()
        for op in self.ops:
            images, targets = op(images, targets, rng)
        return images, targets

    def __len__(self) -> int:
        return len(self.ops)


def build_batch_transforms(ops: list[dict] | None, where: str = "batch_transform_ops") -> BatchCompose:
    """A BatchCompose of the BATCH_TRANSFORMS listed as `[{CutMix: {alpha: 1.0, prob: 0.5}}]`."""
    return BatchCompose(BATCH_TRANSFORMS.build_list(ops, where, ENTRY_SHAPE))
