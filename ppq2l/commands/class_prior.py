"""The class prior of the selective loss (`unknown: selective`) as its paper estimates it: each
class's mean predicted probability over the training images, scored by a model trained with
`unknown: ignore`. Score the training list with tools/eval.py, then:

    python tools/eval.py -c CONFIG -o Global.pretrained_model=IGNORE_RUN/best_model.pth \\
        -o DataLoader.Eval.dataset.cls_label_path=TRAIN_LIST -o Eval.scores=train_scores.npz
    ppq2l-class-prior (or python tools/class_prior.py) --scores train_scores.npz [--loss_index 0]

It prints the `-o` overrides that give the prior to Loss.Train (one number per class, in the
order of the scores' classes; the selective options left out keep their defaults) and, on stderr,
each class's prior next to the share of positives among its known labels (what `prior: labels` would use)."""
from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

import numpy as np

from ppq2l.cli import run_cli
from ppq2l.errors import ConfigError
from ppq2l.utils.logger import get_logger

DIGITS = 4  # the prior is compared with a threshold such as 0.5 or 0.05: four digits are plenty


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", required=True, help="a scores.npz of the training list (tools/eval.py)")
    parser.add_argument("--loss_index", type=int, default=0,
                        help="the Loss.Train entry the override names (default 0)")
    parser.add_argument("--loss_name", default="AsymmetricLoss", choices=("AsymmetricLoss", "BCEWithLogitsLoss"),
                        help="its loss (default AsymmetricLoss)")
    return parser.parse_args(argv)


def mean_prediction(scores: np.ndarray) -> np.ndarray:
    """Each class's mean score over the images: the paper's estimate of its prior."""
    return scores.astype(np.float64).mean(axis=0)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Print the override; returns the prior and the label shares."""
    args = parse_args(argv)
    if args.loss_index < 0:
        raise ConfigError(f"--loss_index must be 0 or more, got {args.loss_index}")
    from ppq2l.calibration.scores_file import load_scores

    data = load_scores(args.scores, "--scores")
    prior = mean_prediction(data.scores)
    from ppq2l.loss.unknown_labels import prior_from_counts

    targets = np.asarray(data.targets)
    shares = prior_from_counts((targets == 1).sum(axis=0), (targets == 0).sum(axis=0)).numpy()
    names = data.class_names or [str(index) for index in range(len(prior))]
    log = get_logger()
    log.info("prior of %d classes over %d images of %s (mean predicted probability; share of positives "
             "among the known labels):\n%s", len(prior), data.num_images, args.scores,
             "\n".join(f"  {name:<24} {value:.{DIGITS}f}  {share:.{DIGITS}f}"
                       for name, value, share in zip(names, prior, shares)))
    values = [round(float(value), DIGITS) for value in prior]
    key = f"Loss.Train.{args.loss_index}.{args.loss_name}"
    print(f"-o {key}.unknown=selective -o \"{key}.selective={{prior: {json.dumps(values)}}}\"")
    return {"prior": values, "label_shares": shares.tolist()}


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 printed, 2 a mistake in the input."""
    return run_cli(main, argv)
