"""thresholds.json: the per-class thresholds tools/calibrate.py writes, with the evidence for them
(precision, recall, F1 and support of every class, the policy, the data and checkpoint they were
fitted on, held-out figures). Read wherever a threshold is accepted: `Infer.PostProcess.threshold`,
`MultiLabelThresholdMetrics.threshold`, the exporter and the deploy predictor. Numpy and json only.

`threshold: auto` (also what a postprocess without a threshold means) picks the thresholds.json
fitted for the checkpoint being used, beside it or in Global.output_dir, and 0.5 when there is none.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ppq2l.errors import ConfigError
from ppq2l.utils.atomic_write import write_text_atomic
from ppq2l.utils.fingerprint import file_fingerprint

FORMAT = "ppq2l.thresholds"
VERSION = 1
FILE_NAME = "thresholds.json"
AUTO = "auto"
DEFAULT_THRESHOLD = 0.5
SHOWN = 5  # differing class names listed in an error; the count covers the rest


@dataclass
class Thresholds:
    """The thresholds of a thresholds.json, one per class in model output order, and its names
    (None where the file was fitted without a label map)."""

    path: Path
    values: np.ndarray
    names: list[str | None]
    document: dict

    def check_classes(self, class_num: int | None = None, names: Sequence[str] | None = None,
                      model: str = "the model") -> None:
        """A ConfigError naming the difference when the file's classes are not the model's."""
        mine = [name for name in self.names if name is not None]
        named = names is not None and len(mine) == len(self.names)
        if class_num is not None and len(self.values) != class_num:
            detail = f"; {name_difference(self.names, names)}" if named else ""
            raise ConfigError(f"{self.path} holds thresholds for {len(self.values)} classes but "
                              f"{model} predicts {class_num}{detail}: calibrate this model "
                              f"(tools/calibrate.py)")
        if named and list(self.names) != list(names):
            raise ConfigError(f"{self.path} was fitted on other classes than {model}'s: "
                              f"{name_difference(self.names, names)}; calibrate this model "
                              f"(tools/calibrate.py) or fix its label file")

    def describe(self) -> str:
        """`PATH (policy f1, fitted on N images)` for logs."""
        fitted = self.document.get("fitted_on") or {}
        images = f", fitted on {fitted['num_images']} images" if "num_images" in fitted else ""
        return f"{self.path} (policy {self.document.get('policy', '?')}{images})"


def name_difference(file_names: Sequence[Any], model_names: Sequence[str]) -> str:
    """The classes only in one of the two lists, or the first position where the order differs."""
    only_file = [str(name) for name in file_names if name not in set(model_names)]
    only_model = [name for name in model_names if name not in set(file_names)]
    if only_file or only_model:
        parts = [f"only in the file: {shown(only_file)}" if only_file else "",
                 f"only in the model: {shown(only_model)}" if only_model else ""]
        return "; ".join(part for part in parts if part)
    for index, (theirs, ours) in enumerate(zip(file_names, model_names)):
        if theirs != ours:
            return (f"the same classes in another order (first at index {index}: {theirs!r} in "
                    f"the file, {ours!r} in the model)")
    return "the same classes"


def shown(names: Sequence[str]) -> str:
    """Up to SHOWN names, quoted, and how many more."""
    more = len(names) - SHOWN
    return ", ".join(repr(name) for name in names[:SHOWN]) + (f" and {more} more" if more > 0 else "")


def is_thresholds_path(value: Any) -> bool:
    """Whether a threshold setting names a file: a path object, or a string other than `auto`
    and other than a number in quotes (`"0.5"`, a mistake that the number check names)."""
    if isinstance(value, os.PathLike):
        return True
    if not isinstance(value, str) or value.strip() == AUTO:
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False


def read_thresholds(path: str | os.PathLike, key: str = "threshold") -> Thresholds:
    """Read and check a thresholds.json; mistakes are a ConfigError naming `key` and the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(f"{key}: {path} {what}; give a number, a list (one per class) or the "
                          f"{FILE_NAME} written by tools/calibrate.py")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{key}: {path} is not a JSON file ({error}); give the {FILE_NAME} "
                          f"written by tools/calibrate.py") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ConfigError(f"{key}: {path} is not a thresholds file of tools/calibrate.py "
                          f"(expected \"format\": \"{FORMAT}\")")
    if not isinstance(document.get("version"), int) or document["version"] > VERSION:
        raise ConfigError(f"{key}: {path} has version {document.get('version')!r}; this ppq2l reads "
                          f"version {VERSION} (update ppq2l, or calibrate again)")
    classes = document.get("classes")
    if not isinstance(classes, list) or not classes:
        raise ConfigError(f"{key}: {path}: \"classes\" must be a non-empty list of "
                          f"{{name, threshold, ...}}")
    values, names = [], []
    for index, entry in enumerate(classes):
        value = entry.get("threshold") if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or not 0 <= value <= 1:
            raise ConfigError(f"{key}: {path}: classes[{index}] needs a \"threshold\" from 0 to 1, "
                              f"got {entry!r}")
        name = entry.get("name")
        if name is not None and not isinstance(name, str):
            raise ConfigError(f"{key}: {path}: classes[{index}].name must be a string or null, "
                              f"got {name!r}")
        values.append(float(value))
        names.append(name)
    return Thresholds(path, np.asarray(values, dtype=np.float64), names, document)


def write_thresholds(path: str | os.PathLike, document: dict) -> Path:
    """Write a thresholds document (FORMAT and VERSION added) through a temporary file."""
    document = {"format": FORMAT, "version": VERSION, **document}
    return write_text_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")


def calibrated_for(weights: str | os.PathLike, folders: Iterable[str | os.PathLike],
                   logger: logging.Logger) -> Thresholds | None:
    """The thresholds.json fitted for the checkpoint `weights`, looked for beside it and in
    `folders`; a file there that belongs to another checkpoint is named in a warning."""
    weights = Path(weights).expanduser()
    if not weights.is_file():
        return None
    fingerprint = file_fingerprint(weights)
    seen: set[Path] = set()
    for folder in (weights.parent, *map(Path, folders)):
        candidate = (folder.expanduser() / FILE_NAME)
        if candidate.resolve() in seen or not candidate.is_file():
            continue
        seen.add(candidate.resolve())
        thresholds = read_thresholds(candidate, f"threshold {AUTO}")
        fitted = thresholds.document.get("fitted_on") or {}
        if fitted.get("checkpoint_fingerprint") == fingerprint:
            return thresholds
        logger.warning("%s was fitted for %s, not for %s (a different file); it is not used. "
                       "Calibrate this checkpoint with tools/calibrate.py", candidate,
                       fitted.get("checkpoint", "another checkpoint"), weights)
    return None


def resolve_auto(settings: dict, weights: str | os.PathLike | None,
                 folders: Iterable[str | os.PathLike], logger: logging.Logger,
                 where: str = "Infer.PostProcess.threshold") -> dict:
    """`settings` (a postprocess mapping) with `threshold: auto`, or no threshold, replaced by the
    path of the checkpoint's calibrated thresholds.json, or DEFAULT_THRESHOLD without one."""
    if settings.get("threshold", AUTO) != AUTO:
        return settings
    found = calibrated_for(weights, folders, logger) if weights else None
    if found is not None:
        logger.info("%s auto: per-class thresholds of %s", where, found.describe())
        return {**settings, "threshold": str(found.path)}
    fitted_for = f"fitted for {weights}" if weights else "(no checkpoint to look for one)"
    logger.info("%s auto: no %s %s; using %g for every class (tools/calibrate.py fits per-class "
                "thresholds)", where, FILE_NAME, fitted_for, DEFAULT_THRESHOLD)
    return {**settings, "threshold": DEFAULT_THRESHOLD}
