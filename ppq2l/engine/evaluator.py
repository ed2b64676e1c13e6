"""Evaluation: run a model over a loader, collect sigmoid scores, compute the configured metrics."""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from ppq2l.data.device_normalize import to_model_input
from ppq2l.engine.runtime import Precision
from ppq2l.errors import CheckpointError
from ppq2l.utils.logger import progress


@torch.inference_mode()
def predict_scores(model: nn.Module, loader: Iterable, device: torch.device, precision: Precision,
                   channels_last: bool = False, desc: str = "eval") -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid scores [N, C] and targets [N, C] for every sample of `loader`, in loader order."""
    was_training = model.training
    model.eval()
    scores, targets = [], []
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for images, labels in progress(loader, desc=desc):
        images = to_model_input(images, loader, device, memory_format)
        with precision.autocast():
            logits = model(images)
        scores.append(torch.sigmoid(logits.float()).cpu().numpy())
        targets.append(labels.numpy())
    model.train(was_training)
    return np.concatenate(scores), np.concatenate(targets)


def predict_dataset(model: nn.Module, loader: Any, device: torch.device, precision: Precision,
                    channels_last: bool = False, desc: str = "eval") -> tuple[np.ndarray, np.ndarray]:
    """Scores and targets for the whole dataset in dataset order: each rank scores its own
    unpadded shard and the shards are gathered, so every sample counts exactly once."""
    from ppq2l.engine.distributed import gather_in_order

    indices = loader.sampler.shard()[0]  # read before iterating, which moves to the next epoch
    scores, targets = predict_scores(model, loader, device, precision, channels_last, desc)
    return gather_in_order(indices, scores, targets)


def check_finite_scores(scores: np.ndarray, image_paths: list[str], weights: str) -> None:
    """A CheckpointError when the model gives NaN or infinite scores (diverged or corrupt
    weights), naming the checkpoint, how many images and the first of them."""
    bad = np.flatnonzero(~np.isfinite(scores).all(axis=1))
    if len(bad):
        raise CheckpointError(
            f"the model of {weights} gives NaN or infinite scores for {len(bad)} of {len(scores)} "
            f"images (first: {image_paths[bad[0]]}): its weights have diverged or are corrupt, so "
            f"no metric can be computed. Evaluate an earlier checkpoint of the run")


def compute_metrics(metrics: list, scores: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """Merge the results of every metric on the same scores (targets binarised at 0.5)."""
    binary = (targets >= 0.5).astype(np.float32)
    results: dict[str, Any] = {}
    for metric in metrics:
        results.update(metric(scores, binary))
    return results


def main_metric_key(metrics: list) -> str:
    """The number that ranks checkpoints: the first metric's `main_key`."""
    return metrics[0].main_key if metrics else "mAP"


def format_metrics(results: dict[str, Any], class_names: list[str] | None = None) -> str:
    """A readable table: the scalar metrics on a line, then per-class AP when present."""
    scalars = [f"{key} {value:.2f}" for key, value in results.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)]
    lines = ["  ".join(scalars)]
    per_class = results.get("per_class_AP")
    if per_class:
        names = class_names or [str(index) for index in range(len(per_class))]
        width = max(len(name) for name in names)
        lines.append(f"{'class'.ljust(width)}  AP")
        for name, value in zip(names, per_class):
            shown = "  n/a (no positives)" if value is None or math.isnan(value) else f"{value:6.2f}"
            lines.append(f"{name.ljust(width)}  {shown}")
    return "\n".join(lines)


def evaluate_from_config(config: dict) -> dict[str, Any]:
    """Evaluate `Global.pretrained_model` on `DataLoader.Eval`; print the table and write
    `output_dir/eval_metrics.json`."""
    # Imported here: components builds models, which the metric helpers above do not need.
    from ppq2l.data import build_dataloader
    from ppq2l.data.label_map import read_label_map
    from ppq2l.engine.components import (build_model_for_run, require_section, start_run,
                                         write_json)
    from ppq2l.engine.distributed import is_main_process
    from ppq2l.metric import build_metrics

    weights = require_section(config, "Global.pretrained_model")
    context = start_run(config, "eval.log")
    model = build_model_for_run(context, weights)
    loader = build_dataloader(require_section(config, "DataLoader.Eval"), "Eval", context.class_num,
                              int(config["Global"]["seed"]), context.device.type == "cuda")
    metrics = build_metrics((config.get("Metric") or {}).get("Eval"), where="Metric.Eval")
    scores, targets = predict_dataset(model, loader, context.device, context.precision,
                                      context.channels_last)
    check_finite_scores(scores, loader.dataset.image_paths, str(weights))
    results = compute_metrics(metrics, scores, targets)
    label_file = ((config.get("Infer") or {}).get("PostProcess") or {}).get("class_id_map_file")
    names = read_label_map(label_file, context.class_num) if label_file else None
    context.logger.info("evaluation of %s on %d images:\n%s", weights, len(scores),
                        format_metrics(results, names))
    if is_main_process():
        write_json(context.output_dir / "eval_metrics.json",
                   {"weights": str(weights), "num_images": int(len(scores)), **results})
    return results
