"""When training ends before `Global.epochs`: at `Global.stop_epoch` (the official ASL loop's
`Stop_epoch`: the schedule spans every epoch, training stops part way), or early, because the
main metric no longer improves (`Global.early_stop_patience`, `Global.early_stop_rule`):

- plateau: stop once `patience` epochs have passed since the best (regular or EMA) result,
  `epoch - best_epoch >= patience`.
- query2label: the official Query2Label main_mlc.py rule, `epoch - max(best_epoch,
  best_regular_epoch) > patience`, and only while the EMA result of this evaluation is below the
  best EMA result, after at least two evaluations. It needs EMA weights.

The bookkeeping lives in the run's `best` record (saved in latest.pth), so a resumed run stops
where an uninterrupted one would.
"""
from __future__ import annotations

from typing import Any

from ppq2l.checks import integer
from ppq2l.config import EARLY_STOP_RULES
from ppq2l.errors import ConfigError

SOURCES_KEY = "by_source"  # best[SOURCES_KEY][source] = {"value", "epoch", "last", "evaluations"}


def last_epoch(settings: dict[str, Any]) -> int:
    """The last epoch a run trains: `Global.stop_epoch`, or `Global.epochs` when it is 0."""
    epochs = int(settings["epochs"])
    return integer(settings["stop_epoch"] or epochs, "Global.stop_epoch", minimum=1, maximum=epochs,
                   why=f"the last epoch trained of the {epochs}-epoch schedule; 0: all of them")


def check_epochs_left(path: Any, start_epoch: int, last: int) -> None:
    """A ConfigError when a resumed run has already trained up to its last epoch."""
    if start_epoch > last:
        raise ConfigError(f"{path} has trained {start_epoch - 1} epochs and Global.stop_epoch is "
                          f"{last}: nothing left to train. Raise Global.stop_epoch (0: every epoch of "
                          f"Global.epochs) to train longer")


class EarlyStop:
    """Decides after each epoch whether training stops early; `patience` 0 never does."""

    def __init__(self, rule: str, patience: int, has_ema: bool) -> None:
        self.rule, self.patience = rule, int(patience or 0)
        if rule not in EARLY_STOP_RULES:
            raise ConfigError(f"Global.early_stop_rule must be one of {', '.join(EARLY_STOP_RULES)}, "
                              f"got {rule!r}")
        if rule == "query2label" and self.patience and not has_ema:
            raise ConfigError("Global.early_stop_rule query2label compares EMA results, but the "
                              "config has no EMA section; add one (EMA: {decay: 0.9997}) or use "
                              "early_stop_rule: plateau")

    @staticmethod
    def record(best: dict[str, Any], epoch: int, values: dict[str, float | None]) -> None:
        """Note this epoch's main metric of each source (model, ema) in the run's `best` record."""
        sources = best.setdefault(SOURCES_KEY, {})
        for source, value in values.items():
            entry = sources.setdefault(source, {"value": None, "epoch": None, "last": None,
                                                "evaluations": 0})
            entry["last"], entry["evaluations"] = value, entry["evaluations"] + 1
            if value is not None and (entry["value"] is None or value > entry["value"]):
                entry["value"], entry["epoch"] = float(value), epoch

    def should_stop(self, epoch: int, best: dict[str, Any]) -> bool:
        """Whether training ends after `epoch`, given the run's `best` record."""
        if not self.patience or best.get("epoch") is None:
            return False
        if self.rule == "plateau":
            return epoch - best["epoch"] >= self.patience
        sources = best.get(SOURCES_KEY, {})
        regular, ema = sources.get("model", {}), sources.get("ema", {})
        latest_best = max(best["epoch"], regular.get("epoch") or best["epoch"])
        if epoch - latest_best <= self.patience or ema.get("evaluations", 0) < 2:
            return False
        return ema["last"] is not None and ema["value"] is not None and ema["last"] < ema["value"]
