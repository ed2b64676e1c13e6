"""The pointing game (Zhang et al., 2016) for per-label maps: for every true label the model
predicts, is the peak of that label's map inside a box of that class? Reported per class and
overall, next to the same game played by the image centre, with the boxes of a COCO json."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Sequence

import numpy as np

from ppq2l.data.text_files import read_utf8_text
from ppq2l.errors import ConfigError, DataError
from ppq2l.explain.render import input_region

ANNOTATIONS_KEY = "Eval.pointing_game_annotations"


@dataclass
class ImageBoxes:
    """The boxes of one image as [x0, y0, x1, y1] pixel rows per class index, and its size."""

    width: int
    height: int
    boxes: dict[int, np.ndarray]


def find_annotations(dataset_cfg: dict, given: str | None) -> Path:
    """The COCO json with the boxes of the Eval images: `given`, else the dataset's own
    `anno_path` (CocoDataset), else `<image_root>/annotations/instances_<folder>.json` where
    <folder> is the first folder of the list's image paths (the COCO layout the list converter
    reads)."""
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise ConfigError(f"{ANNOTATIONS_KEY}: {path} is not a file; give the COCO "
                              f"instances json of the DataLoader.Eval images")
        return path
    if dataset_cfg.get("anno_path"):
        return Path(dataset_cfg["anno_path"]).expanduser()
    root = Path(str(dataset_cfg.get("image_root") or "."))
    guess = None
    label_path = dataset_cfg.get("cls_label_path")
    if label_path and Path(label_path).is_file():
        rows = read_utf8_text(label_path, "list file").splitlines()
        first = next((row for row in rows if row.strip()), "").split("\t")[0].strip()
        folder = PurePath(first).parts[0] if len(PurePath(first).parts) > 1 else None
        if folder:
            guess = root / "annotations" / f"instances_{folder}.json"
    if guess is not None and guess.is_file():
        return guess
    looked = f" (looked for {guess})" if guess is not None else ""
    raise ConfigError(f"Eval.pointing_game needs the boxes of the DataLoader.Eval images and "
                      f"found no COCO json{looked}; set {ANNOTATIONS_KEY}=path/to/instances.json")


def read_boxes(anno_path: Path, image_paths: Sequence[str], class_num: int) -> list[ImageBoxes]:
    """The boxes of every image in `image_paths` (matched to the json's file_name by the
    longest common path ending), classes in the order of the list converter."""
    from ppq2l.utils.create_coco_multilabel_lists import load_coco_annotations

    coco = load_coco_annotations(anno_path)
    category_ids = coco.getCatIds()
    if len(category_ids) != class_num:
        raise ConfigError(f"{anno_path} has {len(category_ids)} categories but the model predicts "
                          f"{class_num} classes; {ANNOTATIONS_KEY} must be the json the Eval "
                          f"labels were made from")
    class_index = {category_id: index for index, category_id in enumerate(category_ids)}
    by_name = {PurePath(image["file_name"]).as_posix(): image for image in coco.imgs.values()}
    found = []
    for path in image_paths:
        parts = PurePath(os.fspath(path)).parts
        image = next((by_name[key] for key in ("/".join(parts[start:]) for start in
                                               range(len(parts))) if key in by_name), None)
        if image is None:
            raise DataError(f"{path} (DataLoader.Eval) is not in {anno_path}; {ANNOTATIONS_KEY} "
                            f"must be the json of the Eval images")
        boxes: dict[int, list] = {}
        for annotation in coco.imgToAnns.get(image["id"], []):
            if "bbox" in annotation:
                x, y, w, h = (float(value) for value in annotation["bbox"])
                boxes.setdefault(class_index[annotation["category_id"]], []).append(
                    [x, y, x + w, y + h])
        width, height = image.get("width"), image.get("height")
        if not width or not height:
            raise DataError(f"{anno_path}: image {image['file_name']} has no width/height, which "
                            f"place the map peaks on it")
        found.append(ImageBoxes(int(width), int(height),
                                {index: np.asarray(rows, dtype=np.float64)
                                 for index, rows in boxes.items()}))
    return found


def inside(point: tuple[float, float], boxes: np.ndarray | None) -> bool:
    """Whether the (x, y) point lies in one of the [x0, y0, x1, y1] boxes (edges included)."""
    if boxes is None or not len(boxes):
        return False
    x, y = point
    return bool(((boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y)
                 & (y <= boxes[:, 3])).any())


def percent(hits: int, total: int) -> float | None:
    """100 * hits / total, None for no trials."""
    return 100.0 * hits / total if total else None


def score_pointing_game(peaks: np.ndarray, scores: np.ndarray, targets: np.ndarray,
                        thresholds: np.ndarray, images: Sequence[ImageBoxes], ops: Sequence[Any],
                        class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy of the map peaks `peaks` [N, C, 2] ((x, y) as fractions of the model input) over
    the true positives at `thresholds`, overall and per class, with the image centre's accuracy
    on the same pairs (`centre_baseline`). Percentages; pairs whose class has no box in the
    image (labels from elsewhere) are counted under `no_box` and left out."""
    class_num = scores.shape[1]
    hits, centre, pairs, no_box = (np.zeros(class_num, dtype=np.int64) for _ in range(4))
    positives = (targets >= 0.5) & (scores >= thresholds[None, :])
    for index, classes in ((n, np.flatnonzero(row)) for n, row in enumerate(positives)):
        image = images[index]
        left, top, right, bottom = input_region(ops, image.width, image.height)
        for class_id in classes:
            boxes = image.boxes.get(int(class_id))
            if boxes is None:
                no_box[class_id] += 1
                continue
            fx, fy = peaks[index, class_id]
            point = ((left + fx * (right - left)) * image.width,
                     (top + fy * (bottom - top)) * image.height)
            pairs[class_id] += 1
            hits[class_id] += inside(point, boxes)
            centre[class_id] += inside((image.width / 2, image.height / 2), boxes)
    names = list(class_names) if class_names else [str(index) for index in range(class_num)]
    return {
        "accuracy": percent(int(hits.sum()), int(pairs.sum())),
        "centre_baseline": percent(int(centre.sum()), int(pairs.sum())),
        "pairs": int(pairs.sum()), "no_box": int(no_box.sum()),
        "per_class": {name: {"accuracy": percent(int(h), int(p)),
                             "centre_baseline": percent(int(c), int(p)), "pairs": int(p)}
                      for name, h, c, p in zip(names, hits, centre, pairs)},
    }


def format_pointing_game(result: dict[str, Any]) -> str:
    """The result as a table: the overall line, then one line per class."""
    def shown(value: float | None) -> str:
        return "   n/a" if value is None else f"{value:6.2f}"

    width = max([5, *(len(name) for name in result["per_class"])])
    lines = [f"pointing game over {result['pairs']} true positives: map peak {shown(result['accuracy'])}"
             f"  centre point {shown(result['centre_baseline'])}",
             f"{'class'.ljust(width)}   peak  centre  pairs"]
    for name, row in result["per_class"].items():
        lines.append(f"{name.ljust(width)} {shown(row['accuracy'])}  {shown(row['centre_baseline'])}"
                     f"  {row['pairs']:5d}")
    return "\n".join(lines)


class PointingGameRun:
    """The pointing game of one evaluation (`Eval.pointing_game`): built before the pass, so a
    missing box file or a model without maps stops it before any work; `model` is what the
    pass runs (the plain logits, the map peaks kept) and `finish` scores it."""

    def __init__(self, config: dict, model: Any, loader: Any, class_num: int) -> None:
        from ppq2l.data.transforms import build_transforms
        from ppq2l.explain.maps import PeakRecorder
        from ppq2l.postprocess import build_postprocess
        from ppq2l.predict import config_postprocess

        self.model = PeakRecorder(model)
        dataset_cfg = config["DataLoader"]["Eval"]["dataset"]
        self.anno_path = find_annotations(dataset_cfg, config["Eval"]["pointing_game_annotations"])
        self.images = read_boxes(self.anno_path, loader.dataset.image_paths, class_num)
        self.ops = build_transforms(dataset_cfg.get("transform_ops"),
                                    "DataLoader.Eval.dataset.transform_ops").ops
        postprocess = build_postprocess(config_postprocess(config), "Infer.PostProcess")
        self.thresholds = postprocess.thresholds_for(class_num)
        self.indices = loader.sampler.shard()[0]  # this process's samples, as the pass sees them

    def finish(self, scores: np.ndarray, targets: np.ndarray,
               class_names: Sequence[str] | None) -> dict[str, Any]:
        """The result (see `score_pointing_game`) for the evaluation's scores and targets."""
        from ppq2l.engine.distributed import gather_in_order

        (peaks,) = gather_in_order(self.indices, np.concatenate(self.model.peaks))
        result = score_pointing_game(peaks, scores, targets, self.thresholds, self.images,
                                     self.ops, class_names)
        return {"annotations": str(self.anno_path), "threshold": "Infer.PostProcess", **result}
