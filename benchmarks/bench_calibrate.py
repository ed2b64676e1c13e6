"""Calibration speed on a COCO-val-sized score matrix: ppq2l's per-class threshold search
(`fit_thresholds`, every class at once, plus the pooled curve for rare classes) for each policy,
against the per-class loop a notebook would write (argsort one column, cumulative counts, pick the
cut). The first call of a process is timed on its own (it pays for the page faults of the big
temporaries; its CPU time in brackets, which another process on the machine does not inflate),
then the median of --repeats calls. Every reference threshold must equal ours
(checked). Also the 5-fold cross-fitting that gives tools/calibrate.py its held-out figures.
Prints a table and a JSON line.

    python benchmarks/bench_calibrate.py [--samples 40137] [--classes 80] [--repeats 5]

Data (seeded, the generator of bench_metrics.py): per-class positive rates from 0.3% to 6%,
sigmoid scores that favour positives, and half of the classes rounded to float16 (as AMP
evaluation gives them), so many scores are tied.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np

from ppq2l.calibration.policy import Policy, parse_policy
from ppq2l.calibration.search import cross_fit, fit_thresholds

from bench_common import median_seconds, time_once, write_results

POLICIES = ("f1", "precision:0.9", "recall:0.8")
MIN_POSITIVES = 5


def make_problem(samples: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 sigmoid scores and 0/1 float32 targets [samples, classes]."""
    rng = np.random.default_rng(seed)
    rates = np.linspace(0.003, 0.06, classes)
    targets = (rng.random((samples, classes)) < rates).astype(np.float32)
    logits = rng.normal(-3.0, 1.5, (samples, classes)) + targets * rng.normal(4.0, 2.0, (samples, classes))
    scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    scores[:, ::2] = scores[:, ::2].astype(np.float16).astype(np.float32)
    return scores, targets


def loop_thresholds(scores: np.ndarray, targets: np.ndarray, policy: Policy) -> np.ndarray:
    """One class at a time: sort the column best first, count, keep the cuts at the end of a tie
    group, pick one by the policy, put the threshold halfway to the next lower score. Classes
    with fewer than MIN_POSITIVES positives are left NaN (the pooled fallback is ours alone)."""
    result = np.full(scores.shape[1], np.nan)
    target = None if policy.target is None else float(policy.target)
    for column in range(scores.shape[1]):
        order = np.argsort(-scores[:, column], kind="stable")
        ranked = scores[order, column].astype(np.float64)
        positives = targets[order, column] > 0
        support = int(positives.sum())
        if support < MIN_POSITIVES:
            continue
        tp = np.cumsum(positives)
        k = np.arange(1, len(ranked) + 1)
        ends = np.append(ranked[:-1] != ranked[1:], True)
        if policy.kind == "f1":
            cut = int(np.argmax(np.where(ends, 2 * tp / (k + support), -1.0)))
        elif policy.kind == "recall":
            cut = int(np.flatnonzero(ends & (tp / support >= target - 1e-12))[0])
        else:
            good = np.flatnonzero(ends & (tp / k >= target - 1e-12))
            cut = int(good[-1]) if len(good) else int(np.argmax(np.where(ends, tp / k, -1.0)))
        result[column] = ranked[cut] if cut == len(ranked) - 1 else (ranked[cut] + ranked[cut + 1]) / 2
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40137, help="COCO 2014 val has 40137 images")
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="benchmarks/results/bench_calibrate.json")
    args = parser.parse_args()

    scores, targets = make_problem(args.samples, args.classes, args.seed)
    rows = {}
    for text in POLICIES:
        policy = parse_policy(text)

        def ours(policy: Policy = policy) -> object:
            return fit_thresholds(scores, targets, policy, MIN_POSITIVES)

        def loop(policy: Policy = policy) -> np.ndarray:
            return loop_thresholds(scores, targets, policy)

        cpu_start = time.process_time()
        first_s = time_once(ours)
        first_cpu_s = time.process_time() - cpu_start
        ours_s = median_seconds(ours, args.repeats, warmup=0)
        fit = fit_thresholds(scores, targets, policy, MIN_POSITIVES)
        loop_s = median_seconds(loop, args.repeats)
        reference = loop_thresholds(scores, targets, policy)
        own = ~np.isnan(reference)
        assert np.array_equal(fit.thresholds[own], reference[own]), text
        rows[text] = {"first_s": first_s, "first_cpu_s": first_cpu_s, "ours_s": ours_s,
                      "loop_s": loop_s, "speedup": loop_s / ours_s}
    policy = parse_policy("f1")
    crossfit_s = median_seconds(lambda: cross_fit(scores, targets, policy, MIN_POSITIVES,
                                                  args.folds, args.seed), max(1, args.repeats // 2))
    print(f"calibration of {args.samples} x {args.classes} scores (python {sys.version.split()[0]}, "
          f"numpy {np.__version__}, {platform.machine()})")
    print(f"{'policy':16s} {'first call (CPU)':>17s} {'ours (median)':>14s} {'per-class loop':>15s} "
          f"{'speedup':>8s}")
    for name, row in rows.items():
        first = f"{row['first_s']:.3f}s ({row['first_cpu_s']:.3f}s)"
        print(f"{name:16s} {first:>17s} {row['ours_s']:13.3f}s {row['loop_s']:14.3f}s "
              f"{row['speedup']:7.1f}x")
    print(f"{args.folds}-fold cross-fitting (f1), held-out counts: {crossfit_s:.3f}s")
    write_results({"benchmark": "calibrate", "samples": args.samples, "classes": args.classes,
                   "numpy": np.__version__, "machine": platform.machine(), "policies": rows,
                   "crossfit_s": crossfit_s, "folds": args.folds}, args.output)


if __name__ == "__main__":
    main()
