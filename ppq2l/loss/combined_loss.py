"""A weighted sum of losses built from a PaddleClas-style list: `- ClassName: {weight: 1.0, ...}`."""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ppq2l.checks import number
from ppq2l.errors import ConfigError, DataError
from ppq2l.registry import LOSSES

ENTRY_SHAPE = "a one-key mapping such as `- AsymmetricLoss: {weight: 1.0, gamma_neg: 4}`"


class CombinedLoss(nn.Module):
    """Sum of `weight * loss(logits, targets)` over its components; `forward` returns each
    component's weighted value under its key and their sum under "loss". Targets of -1 (unknown)
    reach only components that declare `supports_unknown`; for any other, they are a DataError."""

    def __init__(self, entries: Sequence[tuple[str, float, nn.Module]], where: str = "Loss") -> None:
        super().__init__()
        if not entries:
            raise ConfigError("a combined loss needs at least one component")
        keys = [key for key, _, _ in entries]
        if len(set(keys)) != len(keys) or "loss" in keys:
            raise ConfigError(f"loss component keys must be unique and not 'loss', got {keys}")
        self.weights = {key: float(weight) for key, weight, _ in entries}
        self.components = nn.ModuleDict({key: module for key, _, module in entries})
        self.where = where
        self.unaware = [key for key, _, module in entries if not getattr(module, "supports_unknown", False)]

    def check_unknown_support(self, has_unknown: bool, data: str = "the data") -> None:
        """A DataError when `data` holds unknown labels that a component cannot leave out."""
        if has_unknown and self.unaware:
            raise DataError(
                f"{data} has unknown labels (-1), but {self.where} {', '.join(self.unaware)} "
                f"cannot tell them from negatives; use AsymmetricLoss or BCEWithLogitsLoss (with "
                f"`unknown: ignore`, or `unknown: negative` to score them as negatives on purpose), "
                f"or give the dataset complete labels")

    def use_label_counts(self, positives: np.ndarray, negatives: np.ndarray) -> None:
        """Give per-class label counts of the dataset to the components that estimate a prior from
        them (`unknown: selective` with `prior: labels`)."""
        for component in self.components.values():
            if hasattr(component, "use_label_counts"):
                component.use_label_counts(positives, negatives)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return {"loss": weighted sum, <component key>: weighted component value, ...}."""
        if self.unaware:  # the check costs a device synchronisation, so only where it matters
            self.check_unknown_support(bool((targets < 0).any()), "a batch")
        values = {key: self.weights[key] * component(logits, targets)
                  for key, component in self.components.items()}
        total = sum(values.values())
        return {"loss": total, **values}


def build_loss(entries: list[dict] | None, where: str = "Loss.Train") -> CombinedLoss:
    """Build a CombinedLoss from a config list like `[{AsymmetricLoss: {weight: 1.0, gamma_neg: 4}}]`.
    A class used more than once gets its list index appended to its key (`AsymmetricLoss_0`)."""
    parsed = LOSSES.parse_list(entries, where, ENTRY_SHAPE, allow_empty=False)
    counts = Counter(name for _, name, _ in parsed)
    built = []
    for index, (place, name, kwargs) in enumerate(parsed):
        # `weight` belongs to the sum, not to the loss class.
        weight = number(kwargs.pop("weight", 1.0), "weight", minimum=0.0, where=f"{place} {name}")
        key = f"{name}_{index}" if counts[name] > 1 else name
        built.append((key, weight, LOSSES.build(name, kwargs, place)))
    return CombinedLoss(built, where)
