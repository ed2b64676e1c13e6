"""Hide a share of the labels of a list file as unknown (-1), to study training with incomplete
labels: ppq2l-hide-labels (or python tools/hide_labels.py) --input LIST --output LIST
    --fraction 0.5 [--seed 0] [--delimiter TAB]
Exactly round(fraction x known labels) of the known labels, positives and negatives alike, are
drawn without replacement from a generator seeded by --seed; labels already unknown stay so."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ppq2l.checks import number
from ppq2l.cli import run_cli
from ppq2l.errors import ConfigError, DataError
from ppq2l.utils.logger import get_logger


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="list file (path<TAB>1,0,-1,... per line)")
    parser.add_argument("--output", required=True, help="the list file to write")
    parser.add_argument("--fraction", type=float, required=True, help="share of the known labels to hide")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--delimiter", default="\t", help="between path and labels (default TAB)")
    return parser.parse_args(argv)


def count_columns(path: Path, delimiter: str) -> int:
    """The number of labels on the first row of a list file (every row is checked after)."""
    from ppq2l.data.text_files import read_utf8_text

    for line in read_utf8_text(path, "list file").splitlines():
        if line.strip():
            return len(line.strip().rpartition(delimiter)[2].split(","))
    raise DataError(f"list file {path} has no samples")


def hide_labels(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A copy of `labels` with round(fraction x known) known entries set to -1."""
    known = np.flatnonzero(labels.ravel() >= 0)
    chosen = np.random.default_rng(seed).choice(known, size=round(fraction * len(known)), replace=False)
    hidden = labels.copy()
    hidden.ravel()[chosen] = -1
    return hidden


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the list with hidden labels; returns the counts."""
    args = parse_args(argv)
    fraction = number(args.fraction, "--fraction", minimum=0.0, maximum=1.0)
    source, target = Path(args.input), Path(args.output)
    if source.resolve() == target.resolve():
        raise ConfigError(f"--output {target} is --input; write the hidden labels to another file")
    from ppq2l.data.list_dataset import read_label_list
    from ppq2l.data.list_writer import list_lines, write_lines

    paths, labels, _ = read_label_list(source, count_columns(source, args.delimiter), args.delimiter)
    hidden = hide_labels(labels, fraction, args.seed)
    write_lines(target, (line.replace("\t", args.delimiter, 1) for line in list_lines(paths, hidden)))
    counts = {"images": len(paths), "labels": int(labels.size), "known_before": int((labels >= 0).sum()),
              "hidden": int(((labels >= 0) & (hidden < 0)).sum()),
              "positives_hidden": int(((labels == 1) & (hidden < 0)).sum())}
    get_logger().info("hid %d of %d known labels (%d of them positive) in %d images: %s -> %s (seed %d)",
                      counts["hidden"], counts["known_before"], counts["positives_hidden"], len(paths),
                      source, target, args.seed)
    return counts


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 written, 2 a mistake in the input."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
