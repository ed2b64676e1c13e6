"""Evaluation: run a model over a loader, collect sigmoid scores, compute the configured metrics
and, with `Loss.Eval`, the loss on the evaluation data."""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from ppq2l.calibration.scores_file import encode_targets
from ppq2l.checks import is_number
from ppq2l.data.device_normalize import DeviceLoader
from ppq2l.engine.runtime import Precision
from ppq2l.errors import CheckpointError
from ppq2l.utils.logger import progress


@torch.inference_mode()
def predict_scores(model: nn.Module, loader: Iterable, device: torch.device, precision: Precision,
                   channels_last: bool = False, desc: str = "eval", loss_fn: nn.Module | None = None
                   ) -> tuple[np.ndarray, np.ndarray, float]:
    """Sigmoid scores [N, C] and targets [N, C] for every sample of `loader`, in loader order, and
    the sum over batches of `loss_fn`'s loss times the batch size (0 without `loss_fn`)."""
    was_training = model.training
    model.eval()
    scores, targets = [], []
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # one sync at the end
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for images, labels in progress(DeviceLoader(loader, device, memory_format), desc=desc):
        with precision.test_autocast():  # float32 unless AMP.use_fp16_test
            logits = model(images)
        if loss_fn is not None and len(labels):
            # As in training: the loss of the logits, outside autocast, weighted by batch size.
            loss = loss_fn(logits, labels.to(device, non_blocking=True))["loss"]
            loss_sum += loss.double() * len(labels)
        scores.append(torch.sigmoid(logits.float()).cpu().numpy())
        targets.append(labels.numpy())
    model.train(was_training)
    return np.concatenate(scores), np.concatenate(targets), float(loss_sum.item())


def predict_dataset(model: nn.Module, loader: Any, device: torch.device, precision: Precision,
                    channels_last: bool = False, desc: str = "eval", loss_fn: nn.Module | None = None
                    ) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Scores and targets for the whole dataset in dataset order: each rank scores its own
    unpadded shard and the shards are gathered, so every sample counts exactly once. With
    `loss_fn`, also the loss per sample over every rank's samples (batch-size weighted)."""
    from ppq2l.engine.distributed import gather_in_order, mean_over_ranks

    indices = loader.sampler.shard()[0]  # read before iterating, which moves to the next epoch
    scores, targets, loss_sum = predict_scores(model, loader, device, precision, channels_last,
                                               desc, loss_fn)
    loss = None
    if loss_fn is not None:
        # The ratio of the two means over ranks is the ratio of the sums: a mean over samples.
        samples = mean_over_ranks(float(len(scores)), device)
        total = mean_over_ranks(loss_sum, device)
        loss = total / samples if samples else float("nan")
    return (*gather_in_order(indices, scores, targets), loss)


def build_eval_loss(config: dict) -> nn.Module | None:
    """The loss of `Loss.Eval` (built like Loss.Train), or None when the config has none."""
    from ppq2l.loss import build_loss

    entries = (config.get("Loss") or {}).get("Eval")
    return None if entries is None else build_loss(entries, where="Loss.Eval")


def check_unknown_labels(loss_fn: nn.Module | None, loader: Any, where: str) -> None:
    """A DataError before any work when the dataset of `loader` has unknown labels (-1) that a
    component of `loss_fn` cannot leave out (every batch is checked again while it runs); the
    dataset's label counts go to the components that estimate a class prior from them."""
    if loss_fn is not None:
        counts = loader.dataset.label_counts()
        unknown = int(counts.unknown.sum())
        loss_fn.check_unknown_support(unknown > 0, f"{where} ({unknown} unknown labels)")
        loss_fn.use_label_counts(counts.positives, counts.negatives)


def with_loss(results: dict[str, Any], loss: float | None) -> dict[str, Any]:
    """`results` with the evaluation loss first under "loss" (unchanged without Loss.Eval)."""
    return results if loss is None else {"loss": loss, **results}


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
    """Merge the results of every metric on the same scores (targets binarised at 0.5; unknown
    labels, -1, stay -1, and the metrics leave them out)."""
    binary = encode_targets(targets)
    results: dict[str, Any] = {}
    for metric in metrics:
        results.update(metric(scores, binary))
    return results


def unknown_label_counts(targets: np.ndarray) -> dict[str, Any]:
    """How many of the evaluated labels were unknown (-1), in all and per class."""
    per_class = (targets < 0).sum(axis=0)
    return {"num_labels": int(targets.size), "num_unknown_labels": int(per_class.sum()),
            "unknown_labels_per_class": per_class.astype(int).tolist()}


def main_metric_key(metrics: list) -> str:
    """The number that ranks checkpoints: the first metric's `main_key`."""
    return metrics[0].main_key if metrics else "mAP"


def format_metrics(results: dict[str, Any], class_names: list[str] | None = None) -> str:
    """A readable table: the scalar metrics on a line, then per-class AP when present."""
    # Metrics are percentages; a loss may be small, so it gets the training log's digits.
    scalars = [f"{key} {value:.4f}" if key == "loss" else f"{key} {value:.2f}"
               for key, value in results.items() if is_number(value)]
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
    from ppq2l.engine.components import build_model_for_run, require_section, start_run, write_json
    from ppq2l.engine.distributed import is_main_process
    from ppq2l.engine.eval_outputs import prepare_eval_outputs, write_eval_outputs
    from ppq2l.metric import build_metrics

    weights = require_section(config, "Global.pretrained_model")
    context = start_run(config, "eval.log")
    outputs = prepare_eval_outputs(config) if is_main_process() else None  # checked before scoring
    model = build_model_for_run(context, weights)
    loader = build_dataloader(require_section(config, "DataLoader.Eval"), "Eval", context.class_num,
                              int(config["Global"]["seed"]), context.device.type == "cuda")
    metrics = build_metrics((config.get("Metric") or {}).get("Eval"), where="Metric.Eval")
    eval_loss = build_eval_loss(config)
    check_unknown_labels(eval_loss, loader, "DataLoader.Eval.dataset")
    if eval_loss is not None:
        eval_loss.to(context.device)  # its buffers once, not copied every batch
    pointing = None
    if (config.get("Eval") or {}).get("pointing_game"):
        from ppq2l.explain.pointing_game import PointingGameRun, format_pointing_game

        pointing = PointingGameRun(config, model, loader, context.class_num)
    scores, targets, loss = predict_dataset(pointing.model if pointing else model, loader,
                                            context.device, context.precision,
                                            context.channels_last, loss_fn=eval_loss)
    check_finite_scores(scores, loader.dataset.image_paths, str(weights))
    results = with_loss(compute_metrics(metrics, scores, targets), loss)
    label_file = ((config.get("Infer") or {}).get("PostProcess") or {}).get("class_id_map_file")
    names = read_label_map(label_file, context.class_num) if label_file else None
    unknown = unknown_label_counts(targets)
    context.logger.info("evaluation of %s on %d images (%d of %d labels unknown, left out):\n%s",
                        weights, len(scores), unknown["num_unknown_labels"], unknown["num_labels"],
                        format_metrics(results, names))
    if pointing is not None:
        results["pointing_game"] = pointing.finish(scores, targets, names)
        context.logger.info("%s", format_pointing_game(results["pointing_game"]))
    if is_main_process():
        write_json(context.output_dir / "eval_metrics.json",
                   {"weights": str(weights), "num_images": int(len(scores)), **unknown, **results})
        write_eval_outputs(outputs, config, scores, targets, loader.dataset.image_paths, names,
                           str(weights), results, context.logger)
    return results
