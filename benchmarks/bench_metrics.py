"""Evaluation metric speed on a COCO-val-sized score matrix: ppq2l's MultiLabelMAP (integral AP,
the default map_type) and MultiLabelThresholdMetrics (CP..OF1 at 0.5 and their top-3 versions)
against per-class loops written from the definitions, two kinds each: NumPy inside a per-class
loop, and a plain-Python loop (sorted(), one pass over the samples of each class) as PaddleClas's
evaluation does it. "total" adds mAP and the threshold metrics for each kind. Every reference must
agree with ours to 1e-6 (checked). Prints a table and a JSON line.

    python benchmarks/bench_metrics.py [--samples 40137] [--classes 80] [--repeats 5]

Data (seeded): targets with per-class positive rates from 0.3% to 6% (about 3% overall, like
COCO), sigmoid scores from logits that favour positives, and ties: half of the classes are
stored in float16 first (as AMP evaluation produces them), so many scores repeat exactly.
"""
from __future__ import annotations

import argparse
import platform
from typing import Callable

import numpy as np

from ppq2l.metric import MultiLabelMAP, MultiLabelThresholdMetrics

from bench_common import median_seconds, write_results

THRESHOLD, TOP_K = 0.5, 3


def make_problem(samples: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 sigmoid scores and 0/1 float32 targets [samples, classes]."""
    rng = np.random.default_rng(seed)
    rates = np.linspace(0.003, 0.06, classes)
    targets = (rng.random((samples, classes)) < rates).astype(np.float32)
    logits = rng.normal(-3.0, 1.5, (samples, classes)) + targets * rng.normal(4.0, 2.0, (samples, classes))
    scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    scores[:, ::2] = scores[:, ::2].astype(np.float16).astype(np.float32)
    return scores, targets


def loop_average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per class: sort the scores (best first), accumulate true and false positives, take the
    precision at every positive and average. Samples with equal scores are one threshold, so a
    positive's precision is the one at the last sample of its tie group."""
    result = np.full(scores.shape[1], np.nan)
    for column in range(scores.shape[1]):
        order = np.argsort(-scores[:, column], kind="stable")
        ranked = scores[order, column]
        relevant = targets[order, column] > 0
        if not relevant.any():
            continue
        true_positives = np.cumsum(relevant)
        false_positives = np.cumsum(~relevant)
        last_of_tie = np.searchsorted(-ranked, -ranked, side="right") - 1
        precision = true_positives[last_of_tie] / (true_positives[last_of_tie] + false_positives[last_of_tie])
        result[column] = precision[relevant].mean()
    return result


def pure_python_average_precision(scores: list[float], labels: list[float]) -> float:
    """One class in plain Python, as PaddleClas's evaluation does it: sort (score, label) pairs
    best first, walk them one tie group at a time, and credit every positive of a group with the
    precision reached at the group's end. NaN when the class has no positive."""
    ranked = sorted(zip(scores, labels), key=lambda pair: -pair[0])
    seen = hits = 0
    precision_sum = 0.0
    start = 0
    while start < len(ranked):
        end = start
        group_hits = 0
        while end < len(ranked) and ranked[end][0] == ranked[start][0]:
            group_hits += ranked[end][1] > 0
            end += 1
        seen, hits = seen + end - start, hits + group_hits
        precision_sum += group_hits * hits / seen
        start = end
    return precision_sum / hits if hits else float("nan")


def loop_map(scores: np.ndarray, targets: np.ndarray) -> dict:
    per_class = loop_average_precision(scores, targets) * 100.0
    return {"mAP": float(np.nanmean(per_class)), "per_class_AP": per_class}


def pure_python_map(scores: np.ndarray, targets: np.ndarray) -> dict:
    """The per-class loop with no NumPy inside (Python lists, sorted(), a sample loop)."""
    columns, labels = scores.T.tolist(), targets.T.tolist()
    per_class = np.array([pure_python_average_precision(column, label)
                          for column, label in zip(columns, labels)]) * 100.0
    return {"mAP": float(np.nanmean(per_class)), "per_class_AP": per_class}


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def metrics_from_counts(per_class: list[tuple[int, int, int]], suffix: str) -> dict[str, float]:
    """CP, CR, CF1 (classes with positives; no prediction = precision 0) and OP, OR, OF1 in
    percent, from each class's (correct, predicted, positive) counts."""
    class_precision, class_recall = [], []
    correct = made = real = 0
    for hits, predictions, positives in per_class:
        correct, made, real = correct + hits, made + predictions, real + positives
        if positives:
            class_precision.append(hits / predictions if predictions else 0.0)
            class_recall.append(hits / positives)
    cp, cr = float(np.mean(class_precision)), float(np.mean(class_recall))
    op, overall_recall = correct / made if made else 0.0, correct / real
    values = {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": overall_recall,
              "OF1": _f1(op, overall_recall)}
    return {f"{key}{suffix}": value * 100.0 for key, value in values.items()}


def loop_counts(predicted: np.ndarray, targets: np.ndarray, suffix: str) -> dict[str, float]:
    """The threshold metrics of a boolean prediction matrix, counted one class at a time."""
    per_class = []
    for column in range(targets.shape[1]):
        positive = targets[:, column] > 0
        per_class.append((int(np.count_nonzero(predicted[:, column] & positive)),
                          int(np.count_nonzero(predicted[:, column])), int(np.count_nonzero(positive))))
    return metrics_from_counts(per_class, suffix)


def loop_threshold_metrics(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Threshold metrics and top-k ones (the k best labels of each image that also pass the
    threshold; equal scores: lower class index first)."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :TOP_K]
    in_top = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(in_top, top, True, axis=1)
    passed = scores >= THRESHOLD
    return {**loop_counts(passed, targets, ""), **loop_counts(in_top & passed, targets, f"_top{TOP_K}")}


def pure_python_threshold_metrics(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """The threshold and top-k metrics with no NumPy inside: each image's top k from sorted()
    (stable, so equal scores keep the lower class index first), then one pass over the samples
    of each class counting hits, predictions and positives."""
    rows = scores.tolist()
    top_sets = [set(sorted(range(len(row)), key=lambda c, row=row: -row[c])[:TOP_K]) for row in rows]
    columns, labels = scores.T.tolist(), targets.T.tolist()
    results = {}
    for suffix, top_only in (("", False), (f"_top{TOP_K}", True)):
        per_class = []
        for column_index, (column, label) in enumerate(zip(columns, labels)):
            hits = predictions = positives = 0
            for sample, (score, target) in enumerate(zip(column, label)):
                predicted = score >= THRESHOLD and (not top_only or column_index in top_sets[sample])
                predictions += predicted
                positives += target > 0
                hits += predicted and target > 0
            per_class.append((hits, predictions, positives))
        results.update(metrics_from_counts(per_class, suffix))
    return results


def timed(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of `run()` over `repeats` calls, and the result of the untimed first call
    (which is the warm-up)."""
    result = run()
    return median_seconds(run, repeats, warmup=0), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40137, help="COCO 2014 val has 40137 images")
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="benchmarks/results/bench_metrics.json")
    args = parser.parse_args()

    scores, targets = make_problem(args.samples, args.classes, args.seed)
    map_metric = MultiLabelMAP(map_type="integral")
    threshold_metric = MultiLabelThresholdMetrics(threshold=THRESHOLD, top_k=TOP_K)
    rows = {}
    ours_s, ours_map = timed(lambda: map_metric(scores, targets), args.repeats)
    loop_s, reference_map = timed(lambda: loop_map(scores, targets), args.repeats)
    np.testing.assert_allclose(np.array(ours_map["per_class_AP"], dtype=float),
                               reference_map["per_class_AP"], rtol=0, atol=1e-6)
    assert abs(ours_map["mAP"] - reference_map["mAP"]) <= 1e-6
    rows["mAP"] = {"ours_s": ours_s, "loop_s": loop_s, "value": ours_map["mAP"]}
    python_s, python_map = timed(lambda: pure_python_map(scores, targets), 1)
    np.testing.assert_allclose(python_map["per_class_AP"], reference_map["per_class_AP"], rtol=0, atol=1e-6)
    rows["mAP, pure-Python loop"] = {"ours_s": ours_s, "loop_s": python_s, "value": ours_map["mAP"]}
    ours_s, ours_thresholds = timed(lambda: threshold_metric(scores, targets), args.repeats)
    loop_s, reference_thresholds = timed(lambda: loop_threshold_metrics(scores, targets), args.repeats)
    assert ours_thresholds.keys() == reference_thresholds.keys()
    for key, value in reference_thresholds.items():
        assert abs(ours_thresholds[key] - value) <= 1e-6, (key, ours_thresholds[key], value)
    rows["threshold+top3"] = {"ours_s": ours_s, "loop_s": loop_s, "value": ours_thresholds["OF1"]}
    python_s, python_thresholds = timed(lambda: pure_python_threshold_metrics(scores, targets), 1)
    for key, value in reference_thresholds.items():
        assert abs(python_thresholds[key] - value) <= 1e-6, (key, python_thresholds[key], value)
    rows["threshold+top3, pure-Python loop"] = {"ours_s": ours_s, "loop_s": python_s,
                                               "value": ours_thresholds["OF1"]}
    for name, suffix in (("total", ""), ("total, pure-Python loops", ", pure-Python loop")):
        rows[name] = {"ours_s": rows["mAP"]["ours_s"] + rows["threshold+top3"]["ours_s"],
                      "loop_s": rows[f"mAP{suffix}"]["loop_s"] + rows[f"threshold+top3{suffix}"]["loop_s"]}
    for row in rows.values():
        row["speedup"] = row["loop_s"] / row["ours_s"]

    print(f"{'metric':>32} {'ours s':>8} {'loop s':>8} {'speed-up':>9}  value")
    for name, row in rows.items():
        value = f"{'mAP' if name.startswith('mAP') else 'OF1'} {row['value']:.4f}" if "value" in row else ""
        print(f"{name:>32} {row['ours_s']:>8.4f} {row['loop_s']:>8.4f} {row['speedup']:>8.1f}x  {value}")
    results = {"samples": args.samples, "classes": args.classes, "repeats": args.repeats,
               "positive_rate": float(targets.mean()),
               "distinct_score_fraction": float(np.mean([len(np.unique(column)) / len(column)
                                                         for column in scores.T])),
               "agree_within": 1e-6, **rows,
               "machine": f"{platform.processor() or platform.machine()}, numpy {np.__version__}, "
                          f"python {platform.python_version()}"}
    write_results(results, args.output)


if __name__ == "__main__":
    main()
