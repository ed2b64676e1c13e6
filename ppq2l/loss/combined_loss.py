"""A weighted sum of losses built from a PaddleClas-style list: `- ClassName: {weight: 1.0, ...}`."""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import torch
from torch import nn

from ppq2l.errors import ConfigError
from ppq2l.registry import LOSSES, parse_component_entry

ENTRY_SHAPE = "a one-key mapping such as `- AsymmetricLoss: {weight: 1.0, gamma_neg: 4}`"


class CombinedLoss(nn.Module):
    """Sum of `weight * loss(logits, targets)` over its components; `forward` returns each
    component's weighted value under its key and their sum under "loss"."""

    def __init__(self, entries: Sequence[tuple[str, float, nn.Module]]) -> None:
        super().__init__()
        if not entries:
            raise ConfigError("a combined loss needs at least one component")
        keys = [key for key, _, _ in entries]
        if len(set(keys)) != len(keys) or "loss" in keys:
            raise ConfigError(f"loss component keys must be unique and not 'loss', got {keys}")
        self.weights = {key: float(weight) for key, weight, _ in entries}
        self.components = nn.ModuleDict({key: module for key, _, module in entries})

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return {"loss": weighted sum, <component key>: weighted component value, ...}."""
        values = {key: self.weights[key] * component(logits, targets)
                  for key, component in self.components.items()}
        total = sum(values.values())
        return {"loss": total, **values}


def _parse_entry(entry: Any, where: str) -> tuple[str, float, dict[str, Any]]:
    """Split one list entry into (class name, weight, constructor keywords)."""
    name, kwargs = parse_component_entry(entry, where, ENTRY_SHAPE)
    weight = kwargs.pop("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
            or weight < 0:
        raise ConfigError(f"{where}: {name} weight must be a finite number >= 0, got {weight!r}")
    return name, float(weight), kwargs


def build_loss(entries: list[dict] | None, where: str = "Loss.Train") -> CombinedLoss:
    """Build a CombinedLoss from a config list like `[{AsymmetricLoss: {weight: 1.0, gamma_neg: 4}}]`.
    A class used more than once gets its list index appended to its key (`AsymmetricLoss_0`)."""
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: expected a non-empty list of losses, each {ENTRY_SHAPE}; "
                          f"got {entries!r}")
    parsed = [_parse_entry(entry, f"{where}.{index}") for index, entry in enumerate(entries)]
    counts = Counter(name for name, _, _ in parsed)
    built = []
    for index, (name, weight, kwargs) in enumerate(parsed):
        module = LOSSES.build(name, kwargs, where=f"{where}.{index}")
        key = f"{name}_{index}" if counts[name] > 1 else name
        built.append((key, weight, module))
    return CombinedLoss(built)
