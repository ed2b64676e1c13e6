"""Plain binary cross-entropy on logits, computed in float32 like the asymmetric loss."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ppq2l.checks import choice, number, number_list
from ppq2l.errors import ConfigError
from ppq2l.loss.asymmetric_loss import check_pair, compute_dtype
from ppq2l.loss.unknown_labels import UnknownLabels, known_count
from ppq2l.registry import LOSSES

BCE_REDUCTIONS = ("mean", "sum")


@LOSSES.register
class BCEWithLogitsLoss(UnknownLabels, nn.Module):
    """Binary cross-entropy with logits over [B, C]; `pos_weight` (one number or one per class)
    scales the positive term. Targets of -1 are unknown: `unknown: ignore` (default) leaves them
    out of the sum and of the count "mean" divides by, `unknown: negative` scores them as 0,
    `unknown: selective` scores some of them as 0 and leaves the others out
    (ppq2l/loss/unknown_labels.py; no `gamma_unknown`: this loss has no focal weight)."""

    def __init__(self, reduction: str = "mean", pos_weight: float | Sequence[float] | None = None,
                 unknown: str = "ignore", selective: dict | None = None) -> None:
        super().__init__()
        where = "BCEWithLogitsLoss"
        self.reduction = choice(reduction, "reduction", BCE_REDUCTIONS, where=where)
        self.setup_unknown(unknown, selective, where, focal=False)
        values = None
        if isinstance(pos_weight, (list, tuple)):
            values = number_list(pos_weight, "pos_weight", above=0.0,
                                 example="[1.0, 2.5, ...] (one per class)", where=where)
        elif pos_weight is not None:
            values = [number(pos_weight, "pos_weight", above=0.0,
                             why="or a list of them, one per class", where=where)]
        weights = None if values is None else torch.tensor(values, dtype=torch.float32)
        self.register_buffer("pos_weight", weights, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Return the reduced loss (a scalar in float32 or wider) for logits and targets [B, C]."""
        check_pair(logits, targets, "BCEWithLogitsLoss")
        dtype = compute_dtype(logits)
        pos_weight = self.pos_weight
        if pos_weight is not None:
            if pos_weight.numel() not in (1, logits.shape[1]):
                raise ConfigError(f"BCEWithLogitsLoss: pos_weight has {pos_weight.numel()} values but "
                                  f"the model predicts {logits.shape[1]} classes; give one value or one per class")
            pos_weight = pos_weight.to(device=logits.device, dtype=dtype)
        x = logits.to(dtype)
        y, known = self.split_targets(x, targets.to(dtype), "BCEWithLogitsLoss")
        total = F.binary_cross_entropy_with_logits(x, y, weight=known,
                                                   pos_weight=pos_weight, reduction="sum")
        return total if self.reduction == "sum" else total / known_count(y, known)
