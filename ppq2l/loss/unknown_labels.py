"""How a loss treats unknown labels (target -1, from partially labelled data): `ignore` leaves
them out of the sum and of the count that normalises it, `negative` scores them as negatives (what
a loss that knows nothing of unknown labels would silently do), `selective` decides per entry, as
the class-aware selective loss of Ben-Baruch et al. (CVPR 2022) does:

- a class whose prior (the share of images it is present in) exceeds `prior_threshold` has all its
  unknown entries ignored: a frequent class is too likely to be present where it was not annotated;
- of the unknown entries of a batch of B images (all classes together), the `likelihood_topk` x B
  that the model scores most likely present are ignored as well;
- every other unknown entry is scored as a negative (by AsymmetricLoss with its own focal exponent
  `gamma_unknown`).

`prior: labels` estimates each class's prior from the dataset the loss is used on, as the share of
positives among its known labels (fixed when the run is built, so a resumed run gets the same one);
a list gives one value per class (the paper's estimate: the mean predicted probability over the
training images of a model trained with `unknown: ignore`); null sets no prior, so no class is
ignored as a whole.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ppq2l.checks import check_keys, choice, integer, number, number_list
from ppq2l.errors import ConfigError
from ppq2l.utils.logger import get_logger

UNKNOWN_MODES = ("ignore", "negative", "selective")
PRIOR_FROM_LABELS = "labels"
# the training recipe published with the paper's code: K = 5, threshold 0.5, gamma_unann = 4
SELECTIVE_DEFAULTS = {"likelihood_topk": 5, "prior_threshold": 0.5, "prior": PRIOR_FROM_LABELS, "gamma_unknown": 4.0}


@dataclass(frozen=True)
class Selective:
    """The options of `unknown: selective` (see the module docstring)."""

    likelihood_topk: int
    prior_threshold: float | None
    prior: str | tuple[float, ...] | None
    gamma_unknown: float | None  # None for a loss without a focal weight (BCEWithLogitsLoss)


def check_unknown_mode(value: object, where: str) -> str:
    """`value` if it is one of UNKNOWN_MODES, else a ConfigError naming `where`."""
    return choice(value, "unknown", UNKNOWN_MODES, where=where)


def check_selective(value: Any, mode: str, where: str, focal: bool) -> Selective | None:
    """The `selective` options of a loss with `unknown: mode` (None unless mode is selective; a
    ConfigError when they are given for another mode). `focal`: the loss has focal weights, so
    `gamma_unknown` applies."""
    if mode != "selective":
        if value is not None:
            raise ConfigError(f"{where}: selective options apply only with `unknown: selective`, "
                              f"but unknown is {mode!r}; remove `selective` or set unknown: selective")
        return None
    keys = tuple(key for key in SELECTIVE_DEFAULTS if focal or key != "gamma_unknown")
    options = {key: SELECTIVE_DEFAULTS[key] for key in keys}
    options.update(check_keys(value, keys, f"{where}.selective"))
    place = f"{where}.selective"
    topk = integer(options["likelihood_topk"], "likelihood_topk", minimum=0,
                   why="per image of a batch, how many of the unknown labels the model finds most "
                       "likely are ignored; 0: none", where=place)
    threshold = options["prior_threshold"]
    if threshold is not None:
        threshold = number(threshold, "prior_threshold", minimum=0.0, maximum=1.0,
                           why="or null: no class ignored for its prior", where=place)
    prior = options["prior"]
    if prior is not None and prior != PRIOR_FROM_LABELS:
        if not isinstance(prior, (list, tuple)):
            raise ConfigError(f"{place}: prior must be `labels` (estimated from the dataset's known "
                              f"labels), a list of one number from 0 to 1 per class, or null; got {prior!r}")
        prior = tuple(number_list(prior, "prior", minimum=0.0, maximum=1.0,
                                  example="[0.21, 0.05, ...] (one per class)", where=place))
    gamma = None
    if focal:
        gamma = number(options["gamma_unknown"], "gamma_unknown", minimum=0.0, where=place)
    return Selective(topk, threshold, prior, gamma)


def prior_from_counts(positives: Any, negatives: Any) -> torch.Tensor:
    """Per-class prior from label counts: the share of positives among the known labels (0 for a
    class with no known label)."""
    positives = torch.as_tensor(positives, dtype=torch.float64)
    known = positives + torch.as_tensor(negatives, dtype=torch.float64)
    return (positives / known.clamp(min=1)).to(torch.float32)


def split_unknown(targets: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`(targets with unknown entries as 0, known mask)`; the mask (1.0 known, 0.0 unknown, in the
    targets' dtype) is None when unknown entries count as negatives. No `.any()` test, so no device
    synchronisation: a batch without unknown labels gets an all-ones mask."""
    known = targets >= 0
    values = torch.where(known, targets, torch.zeros_like(targets))
    if mode == "negative":
        return values, None
    return values, known.to(targets.dtype)


def selected_unknown(logits: torch.Tensor, targets: torch.Tensor, options: Selective,
                     prior: torch.Tensor | None, where: str) -> torch.Tensor:
    """Bool [B, C]: the unknown entries that `unknown: selective` scores as negatives. Without
    data-dependent shapes or `.item()`, so no device synchronisation."""
    unknown = targets < 0
    keep = unknown.clone()
    with torch.no_grad():
        if prior is not None and options.prior_threshold is not None:
            if prior.numel() != logits.shape[1]:
                raise ConfigError(f"{where}: selective prior has {prior.numel()} values but the model "
                                  f"predicts {logits.shape[1]} classes; give one value per class")
            frequent = prior.to(logits.device) > options.prior_threshold  # a no-op when it is there
            keep &= ~frequent.unsqueeze(0)
        count = min(options.likelihood_topk * logits.shape[0], logits.numel())
        if count > 0:
            # the most likely of all unknown entries of the batch, the classes ignored for their
            # prior included; known entries rank last and are never unknown anyway
            ranked = torch.where(unknown, logits.detach(), torch.full_like(logits, -torch.inf))
            top = torch.topk(ranked.flatten(), count).indices
            likely = torch.zeros(logits.numel(), dtype=torch.bool, device=logits.device).scatter(
                0, top, torch.ones_like(top, dtype=torch.bool))
            keep &= ~likely.view_as(keep)
    return keep


def unknown_weights(logits: torch.Tensor, targets: torch.Tensor, mode: str, options: Selective | None,
                    prior: torch.Tensor | None, where: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`(targets with unknown entries as 0, weight)`: the weight (in the targets' dtype) is 1 for
    the entries the loss scores and 0 for those it leaves out; None when it scores them all."""
    values, known = split_unknown(targets, mode)
    if mode != "selective":
        return values, known
    return values, (known.bool() | selected_unknown(logits, targets, options, prior, where)).to(targets.dtype)


def known_count(targets: torch.Tensor, known: torch.Tensor | None) -> torch.Tensor | int:
    """The number of entries a mean divides by: those the loss scores (at least 1, so a batch
    whose labels are all left out gives a zero loss, not 0/0), or all of them."""
    return targets.numel() if known is None else known.sum().clamp(min=1)


class UnknownLabels:
    """The part of a loss module that holds its `unknown` mode, its selective options and the
    prior (a buffer, not saved: it is given or re-estimated from the dataset when a run is built)."""

    def setup_unknown(self, unknown: Any, selective: Any, where: str, focal: bool) -> None:
        self.unknown = check_unknown_mode(unknown, where)
        self.selective = check_selective(selective, self.unknown, where, focal)
        prior = self.selective.prior if self.selective is not None else None
        values = torch.tensor(prior, dtype=torch.float32) if isinstance(prior, tuple) else None
        self.register_buffer("prior", values, persistent=False)

    supports_unknown = True  # targets of -1 are understood (see `unknown`)

    @property
    def wants_label_prior(self) -> bool:
        """Whether the prior is to be estimated from the dataset's labels (`prior: labels`)."""
        return self.selective is not None and self.selective.prior == PRIOR_FROM_LABELS

    def use_label_counts(self, positives: Any, negatives: Any) -> None:
        """Estimate the prior of `prior: labels` from per-class label counts of the dataset."""
        if self.wants_label_prior:
            self.prior = prior_from_counts(positives, negatives)
            threshold = self.selective.prior_threshold
            frequent = [] if threshold is None else (self.prior > threshold).nonzero().flatten().tolist()
            get_logger().info("%s: selective prior from the known labels, per class: %s; classes whose "
                              "unknown labels are all ignored (prior > %s): %s", type(self).__name__,
                              " ".join(f"{value:.3f}" for value in self.prior.tolist()), threshold,
                              frequent or "none")

    def split_targets(self, logits: torch.Tensor, targets: torch.Tensor,
                      where: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`unknown_weights` with this loss's mode, options and prior."""
        if self.wants_label_prior and self.prior is None:
            raise ConfigError(f"{where}: selective `prior: labels` is estimated from the dataset when a "
                              f"run is built, and this loss has seen none; give the prior as a list, one "
                              f"value per class, or null")
        if self.prior is not None and self.prior.device != logits.device:
            self.prior = self.prior.to(logits.device)  # once: a copy every step would wait for the device
        return unknown_weights(logits, targets, self.unknown, self.selective, self.prior, where)
