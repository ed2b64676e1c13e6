"""Scan the datasets of a config before training: unreadable images, rows whose labels do not
fit `class_num`, classes without a single positive, per-class label counts and the share of
unknown (-1) labels per class."""
from __future__ import annotations

from typing import Any

import numpy as np

from ppq2l.data.dataloader import build_dataset
from ppq2l.data.label_store import STATES, LabelCounts
from ppq2l.data.list_dataset import MissingImagesError
from ppq2l.data.shard_reader import decode_labels, image_member, read_piece
from ppq2l.data.transforms import decode_to_bgr
from ppq2l.errors import DataError

SPLITS = ("Train", "Eval")


def check_split(dataset_cfg: dict, class_num: int, where: str) -> dict[str, Any]:
    """The report of one dataset section: `problems` (messages) and label statistics."""
    try:
        dataset = build_dataset(dataset_cfg, class_num, where)
    except MissingImagesError as error:  # every one of them, not only the error's first few
        return {"where": where, "problems": [f"missing image {item}" for item in error.missing],
                "num_images": 0}
    except DataError as error:  # e.g. a row with the wrong number of labels, named by line
        return {"where": where, "problems": [str(error)], "num_images": 0}
    if hasattr(dataset, "iter_shards"):
        problems, counts = check_shards(dataset)
    else:
        problems, counts = check_files(dataset), dataset.label_counts()
    positives = counts.positives
    empty = [index for index, count in enumerate(positives) if count == 0]
    if empty:
        problems.append(f"classes without any positive image: {', '.join(map(str, empty))}")
    return {"where": where, "problems": problems, "num_images": len(dataset),
            "positives_per_class": positives.tolist(),
            "unknown_per_class": counts.unknown.tolist(),
            "unknown_fraction_per_class": (counts.unknown / max(len(dataset), 1)).round(4).tolist(),
            "images_without_labels": int((counts.positives_per_sample == 0).sum()),
            "labels_per_image": float(counts.positives_per_sample.mean()) if len(dataset) else 0.0}


def check_files(dataset: Any) -> list[str]:
    """A problem line for each listed image that cannot be read or decoded."""
    problems = []
    for path, source in zip(dataset.image_paths, dataset.sources):
        try:
            with open(path, "rb") as handle:
                decode_to_bgr(handle.read())
        except OSError as error:
            problems.append(f"unreadable image {path} ({source}): {error.strerror or error}")
        except DataError as error:
            problems.append(f"unreadable image {path} ({source}): {error}")
    return problems


def check_shards(dataset: Any) -> tuple[list[str], LabelCounts]:
    """Read every shard of a ShardedDataset once: problem lines for undecodable images and
    damaged shards, and the label counts of what was read."""
    problems, per_class, per_sample = [], np.zeros((3, dataset.class_num), dtype=np.int64), []
    for shard, url in enumerate(dataset.manifest.shards):
        first, count = int(dataset.offsets[shard]), int(dataset.manifest.counts[shard])
        try:
            for index, sample in read_piece(url, first, 0, count):
                where = dataset.image_paths[index]
                try:
                    labels, source = decode_labels(sample.get("json", b""), dataset.class_num, where)
                    per_class += [labels == state for state in STATES]
                    per_sample.append(int((labels == 1).sum()))
                    decode_to_bgr(image_member(sample, where))
                except DataError as error:
                    problems.append(f"unreadable sample {where}: {error}")
        except DataError as error:
            problems.append(str(error))
    return problems, LabelCounts(*per_class, np.array(per_sample, dtype=np.int64))


def check_datasets(config: dict) -> list[dict[str, Any]]:
    """Reports for `DataLoader.Train.dataset` and `DataLoader.Eval.dataset` (those present)."""
    class_num = int(config["Arch"]["class_num"])
    loaders = config.get("DataLoader") or {}
    return [check_split(loaders[split]["dataset"], class_num, f"DataLoader.{split}.dataset")
            for split in SPLITS if (loaders.get(split) or {}).get("dataset")]


def format_report(reports: list[dict[str, Any]]) -> str:
    """The reports as text: counts and statistics, then every problem on its own line."""
    lines = []
    for report in reports:
        lines.append(f"{report['where']}: {report['num_images']} images, "
                     f"{len(report['problems'])} problem(s)")
        if "positives_per_class" in report:
            counts = report["positives_per_class"]
            lines.append(f"  positives per class: {counts} (min {min(counts)}, max {max(counts)}); "
                         f"{report['labels_per_image']:.2f} labels per image; "
                         f"{report['images_without_labels']} images without labels")
            unknown = report["unknown_per_class"]
            if any(unknown):
                share = 100 * sum(unknown) / max(report["num_images"] * len(unknown), 1)
                fractions = ", ".join(f"{fraction:.2f}" for fraction in report["unknown_fraction_per_class"])
                lines.append(f"  unknown labels (-1, left out of losses with unknown: ignore and of the "
                             f"metrics): {share:.1f}% in all; fraction per class: [{fractions}]")
        lines += [f"  - {problem}" for problem in report["problems"]]
    return "\n".join(lines)
