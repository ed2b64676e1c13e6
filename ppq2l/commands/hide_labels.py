"""Hide a share of the labels of a list file as unknown (-1), or keep a share of its images, to
study training with incomplete labels: ppq2l-hide-labels (or python tools/hide_labels.py) --input LIST --output LIST
    (--fraction 0.5 | --keep_images 0.5) [--seed 0] [--delimiter TAB]
--fraction: exactly round(fraction x known labels) of the known labels, positives and negatives
alike, are drawn without replacement from a generator seeded by --seed and written as -1; labels
already unknown stay so.
--keep_images: the reference for as much supervision given the other way: exactly
round(share x images) images, drawn without replacement from the seeded generator, keep their rows
as they are (in the input's order); the rows of the others are left out of the output."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ppq2l.checks import number
from ppq2l.cli import run_cli
from ppq2l.errors import ConfigError
from ppq2l.utils.logger import get_logger


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="list file (path<TAB>1,0,-1,... per line)")
    parser.add_argument("--output", required=True, help="the list file to write")
    parser.add_argument("--fraction", type=float, help="share of the known labels to hide")
    parser.add_argument("--keep_images", type=float,
                        help="instead of --fraction: share of the images to keep, with their labels as they are")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--delimiter", default="\t", help="between path and labels (default TAB)")
    return parser.parse_args(argv)


def hide_labels(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A copy of `labels` with round(fraction x known) known entries set to -1."""
    known = np.flatnonzero(labels.ravel() >= 0)
    chosen = np.random.default_rng(seed).choice(known, size=round(fraction * len(known)), replace=False)
    hidden = labels.copy()
    hidden.ravel()[chosen] = -1
    return hidden


def keep_images(count: int, share: float, seed: int) -> np.ndarray:
    """The sorted indices of round(share x count) of `count` images, drawn without replacement."""
    return np.sort(np.random.default_rng(seed).choice(count, size=round(share * count), replace=False))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the new list; returns the counts (images and labels written, and what was hidden or
    left out)."""
    args = parse_args(argv)
    if (args.fraction is None) == (args.keep_images is None):
        raise ConfigError(f"give {'one of ' if args.fraction is None else 'only one of '}--fraction (hide that "
                          "share of the known labels) and --keep_images (keep that share of the images, with "
                          "their labels as they are)")
    by_image = args.keep_images is not None
    option = "--keep_images" if by_image else "--fraction"
    share = number(args.keep_images if by_image else args.fraction, option, minimum=0.0, maximum=1.0)
    source, target = Path(args.input), Path(args.output)
    if source.resolve() == target.resolve():
        raise ConfigError(f"--output {target} is --input; write the new list to another file")
    from ppq2l.data.list_dataset import read_label_list
    from ppq2l.data.list_writer import list_lines, write_lines

    paths, labels, _ = read_label_list(source, None, args.delimiter)  # the file is read once
    log = get_logger()
    if by_image:
        kept = keep_images(len(paths), share, args.seed)
        written_paths, written = [paths[index] for index in kept], labels[kept]
        counts = {"images_before": len(paths), "images": len(written_paths), "labels": int(written.size),
                  "known": int((written >= 0).sum()), "positives": int((written == 1).sum())}
        log.info("kept %d of %d images (%d of %d positive labels): %s -> %s (seed %d)", counts["images"],
                 len(paths), counts["positives"], int((labels == 1).sum()), source, target, args.seed)
    else:
        written_paths, written = paths, hide_labels(labels, share, args.seed)
        newly = (labels >= 0) & (written < 0)
        counts = {"images": len(paths), "labels": int(labels.size), "known_before": int((labels >= 0).sum()),
                  "hidden": int(newly.sum()), "positives_hidden": int((newly & (labels == 1)).sum())}
        log.info("hid %d of %d known labels (%d of them positive) in %d images: %s -> %s (seed %d)",
                 counts["hidden"], counts["known_before"], counts["positives_hidden"], len(paths),
                 source, target, args.seed)
    write_lines(target, (line.replace("\t", args.delimiter, 1) for line in list_lines(written_paths, written)))
    return counts


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 written, 2 a mistake in the input."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
