"""scores.npz: a model's sigmoid scores on a data set, saved once by tools/eval.py (and by
tools/calibrate.py when it had to score) so that calibration and reports need no second pass of
the model. It holds `scores` float32 [N, C], `targets` int8 [N, C] (1 positive, 0
negative, -1 unknown), `image_paths`,
`class_names` and `source` (JSON: the checkpoint, its fingerprint, and the data set's config),
which decides whether the file still belongs to a checkpoint and data set."""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppq2l.errors import ConfigError, DataError
from ppq2l.utils.atomic_write import atomic_output
from ppq2l.utils.fingerprint import file_fingerprint

FORMAT = "ppq2l.scores"
VERSION = 1
FILE_NAME = "scores.npz"
LIST_KEYS = ("cls_label_path", "csv_path", "anno_path")  # the annotation file of each dataset kind
ARRAYS = ("scores", "targets", "image_paths", "class_names", "source")


@dataclass
class Scores:
    """Scores and targets [N, C] of N images in data set order, with where they come from."""

    scores: np.ndarray
    targets: np.ndarray
    image_paths: list[str]
    class_names: list[str] | None
    source: dict
    path: Path | None = None

    @property
    def num_images(self) -> int:
        """N."""
        return int(self.scores.shape[0])

    @property
    def num_unknown_labels(self) -> int:
        """How many labels are unknown (-1)."""
        return int((np.asarray(self.targets) < 0).sum())


def encode_targets(targets: Any) -> np.ndarray:
    """Targets as stored: int8, 1 where a label is >= 0.5, -1 where it is unknown (< 0), else 0."""
    targets = np.asarray(targets)
    return np.where(targets < 0, -1, targets >= 0.5).astype(np.int8)


def scores_source(weights: str | os.PathLike, data_key: str, dataset: dict,
                  config: dict) -> dict[str, Any]:
    """What identifies a set of scores: the checkpoint (path and fingerprint), the data set's
    config under `data_key` and the precision it was computed in."""
    if not Path(weights).expanduser().is_file():
        raise ConfigError(f"Global.pretrained_model: {weights} is not a checkpoint file; give the "
                          f"best_model.pth (or latest.pth) of a training run")
    dataset = json.loads(json.dumps(dataset, default=str))  # plain JSON types, comparable
    list_file = next((dataset[key] for key in LIST_KEYS if dataset.get(key)), None)
    return {"checkpoint": str(weights), "checkpoint_fingerprint": file_fingerprint(weights),
            "data": data_key, "list_file": None if list_file is None else str(list_file),
            "dataset": dataset, "amp": json.loads(json.dumps(config.get("AMP"), default=str))}


def same_source(saved: dict, wanted: dict) -> bool:
    """Whether scores computed for `saved` are the scores `wanted` describes (the same checkpoint
    contents, data set config and precision; the checkpoint may have moved)."""
    keys = ("checkpoint_fingerprint", "dataset", "amp")
    return all(saved.get(key) == wanted.get(key) for key in keys)


def save_scores(path: str | os.PathLike, scores: Scores) -> Path:
    """Write `scores` as one .npz through a temporary file and a rename."""
    path = Path(path)
    names = scores.class_names if scores.class_names is not None else []
    source = json.dumps({"format": FORMAT, "version": VERSION, **scores.source})
    with atomic_output(path) as handle:
        np.savez(handle, scores=np.asarray(scores.scores, dtype=np.float32),
                 targets=encode_targets(scores.targets),
                 image_paths=np.asarray(scores.image_paths, dtype=str),
                 class_names=np.asarray(names, dtype=str), source=np.asarray(source))
    return path


def load_scores(path: str | os.PathLike, key: str) -> Scores:
    """Read a scores.npz written by save_scores; a DataError names `key`, the file and the fix."""
    path = Path(path).expanduser()
    remedy = "write it with tools/eval.py (Eval.scores)"
    if not path.is_file():
        raise DataError(f"{key}: {path} does not exist; {remedy}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in ARRAYS if name not in archive.files]
            if missing:
                raise DataError(f"{key}: {path} lacks {', '.join(missing)}: it is not a scores file "
                                f"of ppq2l; {remedy}")
            arrays = {name: archive[name] for name in ARRAYS}
        source = json.loads(str(arrays["source"]))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"{key}: cannot read {path} ({error}); {remedy}") from None
    if not isinstance(source, dict) or source.get("format") != FORMAT:
        raise DataError(f"{key}: {path} is not a scores file of ppq2l; {remedy}")
    scores, targets = arrays["scores"], arrays["targets"]
    paths, names = arrays["image_paths"].tolist(), arrays["class_names"].tolist()
    if scores.ndim != 2 or targets.shape != scores.shape or len(paths) != len(scores) \
            or (names and len(names) != scores.shape[1]) or scores.size == 0:
        raise DataError(f"{key}: {path} is inconsistent (scores {scores.shape}, targets "
                        f"{targets.shape}, {len(paths)} image paths, {len(names)} class names); "
                        f"{remedy}")
    if not (np.isfinite(scores).all() and scores.min() >= 0 and scores.max() <= 1):
        raise DataError(f"{key}: {path} holds scores outside [0, 1] or NaN; {remedy}")
    return Scores(scores, targets, paths, names or None, source, path)
