"""How a loss treats unknown labels (target -1, from partially labelled data): `ignore` leaves
them out of the sum and of the count that normalises it, `negative` scores them as negatives (what
a loss that knows nothing of unknown labels would silently do)."""
from __future__ import annotations

import torch

from ppq2l.checks import choice

UNKNOWN_MODES = ("ignore", "negative")


def check_unknown_mode(value: object, where: str) -> str:
    """`value` if it is one of UNKNOWN_MODES, else a ConfigError naming `where`."""
    return choice(value, "unknown", UNKNOWN_MODES, where=where)


def split_unknown(targets: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`(targets with unknown entries as 0, known mask)`; the mask (1.0 known, 0.0 unknown, in the
    targets' dtype) is None when unknown entries count as negatives. No `.any()` test, so no device
    synchronisation: a batch without unknown labels gets an all-ones mask."""
    known = targets >= 0
    values = torch.where(known, targets, torch.zeros_like(targets))
    if mode == "negative":
        return values, None
    return values, known.to(targets.dtype)


def known_count(targets: torch.Tensor, known: torch.Tensor | None) -> torch.Tensor | int:
    """The number of entries a mean divides by: the known ones (at least 1, so a batch whose
    labels are all unknown gives a zero loss, not 0/0), or all of them."""
    return targets.numel() if known is None else known.sum().clamp(min=1)
