"""Asymmetric loss (ASL, Ridnik et al., ICCV 2021): binary cross-entropy per class with a focal
weight that may differ for positives and negatives and a probability margin on negatives."""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from ppq2l.checks import choice, flag, number
from ppq2l.errors import ConfigError
from ppq2l.loss.unknown_labels import UnknownLabels, known_count
from ppq2l.registry import LOSSES

REDUCTIONS = ("sum", "mean", "q2l")


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype a loss is computed in: at least float32, so half-precision inputs cannot
    underflow `eps` (1e-8 is 0 in float16) and turn the loss into NaN."""
    return torch.promote_types(tensor.dtype, torch.float32)


def check_pair(logits: torch.Tensor, targets: torch.Tensor, where: str) -> None:
    """Raise a ConfigError unless logits and targets are both [batch, classes] of the same shape."""
    if logits.ndim != 2 or logits.shape != targets.shape:
        raise ConfigError(
            f"{where}: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must both be "
            f"[batch, classes] with the same shape; check that Arch.class_num matches the number of "
            f"labels per line in the list file")


def focal_weight(probability: torch.Tensor, gamma: float) -> torch.Tensor | None:
    """probability ** gamma, or None for gamma 0 (a weight of 1)."""
    return torch.pow(probability, gamma) if gamma > 0 else None


def one_if_none(weight: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """`weight`, or ones shaped like `like` where it is None."""
    return torch.ones_like(like) if weight is None else weight


@LOSSES.register
class AsymmetricLoss(UnknownLabels, nn.Module):
    """Asymmetric loss for multi-label logits [B, C] and targets [B, C] in [0, 1] or -1 (unknown),
    computed in float32.

    With p = sigmoid(x) and, on negatives, p_m = max(p - clip, 0):
        L = -[ y (1-p)^gamma_pos log(max(p, eps)) + (1-y) p_m^gamma_neg log(max(1-p_m, eps)) ].
    Targets act as weights, so soft targets (CutMix, label smoothing) mix the two terms. For hard
    0/1 targets this equals the official ASL and Query2Label losses; for soft targets those mix the
    focal weights of both terms into one, which is not reproduced here.

    Reductions: "sum" (ASL, ML-Decoder, PaddleClas); "mean" over all B*C elements; "q2l", the
    official Query2Label scaling `-loss.sum() / B / C * 1000`, i.e. 1000 times "mean".
    Unknown targets: `unknown: ignore` (default) leaves them out of the sum, and "mean" and "q2l"
    divide by the number of known entries instead of B*C; `unknown: negative` scores them as 0;
    `unknown: selective` scores some as 0, with the focal exponent `selective.gamma_unknown` in place
    of gamma_neg, and leaves the others out (ppq2l/loss/unknown_labels.py); the mean divides by the
    number of entries scored.
    With `disable_torch_grad_focal_loss` the focal weights are constants for autograd (as with
    `--dtgfl` in the Query2Label recipe); the global grad mode is left untouched.
    """

    def __init__(self, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05,
                 eps: float = 1e-8, disable_torch_grad_focal_loss: bool = True,
                 reduction: str = "sum", unknown: str = "ignore", selective: dict | None = None) -> None:
        super().__init__()
        where = "AsymmetricLoss"
        self.gamma_pos = number(gamma_pos, "gamma_pos", minimum=0.0, where=where)
        self.gamma_neg = number(gamma_neg, "gamma_neg", minimum=0.0, where=where)
        self.clip = number(clip, "clip", minimum=0.0, below=1.0, why="0 disables the margin",
                           where=where)
        self.eps = number(eps, "eps", above=0.0, below=1.0, where=where)
        self.disable_torch_grad_focal_loss = flag(disable_torch_grad_focal_loss,
                                                  "disable_torch_grad_focal_loss", where=where)
        self.reduction = choice(reduction, "reduction", REDUCTIONS, where=where)
        self.setup_unknown(unknown, selective, where, focal=True)

    def extra_repr(self) -> str:
        return (f"gamma_pos={self.gamma_pos}, gamma_neg={self.gamma_neg}, clip={self.clip}, "
                f"eps={self.eps}, disable_torch_grad_focal_loss={self.disable_torch_grad_focal_loss}, "
                f"reduction={self.reduction!r}, unknown={self.unknown!r}"
                + (f", selective={self.selective}" if self.selective is not None else ""))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Return the reduced loss (a scalar in float32 or wider) for logits and targets [B, C]."""
        check_pair(logits, targets, "AsymmetricLoss")
        dtype = compute_dtype(logits)
        x = logits.to(dtype)
        targets = targets.to(dtype)
        y, known = self.split_targets(x, targets, "AsymmetricLoss")
        log_eps = math.log(self.eps)

        # log-sigmoid is exact where 1 - sigmoid(x) would round to 0; clamping the log at log(eps)
        # is the same as clamping the probability at eps.
        log_p = F.logsigmoid(x).clamp(min=log_eps)
        if self.clip > 0:
            p_neg = (torch.sigmoid(x) - self.clip).clamp(min=0)
            log_not_p_neg = torch.log((1 - p_neg).clamp(min=self.eps))
        else:
            p_neg = torch.sigmoid(x)
            log_not_p_neg = F.logsigmoid(-x).clamp(min=log_eps)

        positive = y * log_p
        negative = (1 - y) * log_not_p_neg
        focal_context = torch.no_grad() if self.disable_torch_grad_focal_loss else contextlib.nullcontext()
        with focal_context:
            positive_weight = torch.pow(torch.sigmoid(-x), self.gamma_pos) if self.gamma_pos > 0 else None
            negative_weight = focal_weight(p_neg, self.gamma_neg)
            if self.selective is not None and self.selective.gamma_unknown != self.gamma_neg:
                unknown_weight = focal_weight(p_neg, self.selective.gamma_unknown)
                negative_weight = torch.where(targets < 0, one_if_none(unknown_weight, p_neg),
                                              one_if_none(negative_weight, p_neg))
        if positive_weight is not None:
            positive = positive * positive_weight
        if negative_weight is not None:
            negative = negative * negative_weight

        elementwise = positive + negative  # finite: both logs are clamped at log(eps)
        total = (elementwise if known is None else elementwise * known).sum()
        if self.reduction == "sum":
            return -total
        scale = 1000.0 if self.reduction == "q2l" else 1.0
        return -total / known_count(y, known) * scale
