"""Generate the synthetic shapes demo dataset (COCO format):
ppq2l-make-demo-dataset (or python tools/make_demo_dataset.py) --root dataset/demo_shapes
    [--num_train 2000] [--num_val 500] [--seed 0] [--force]
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Sequence

from ppq2l.cli import run_cli
from ppq2l.data.demo_shapes import CATEGORIES, generate_demo_dataset, is_up_to_date


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="folder to write the dataset into")
    parser.add_argument("--num_train", type=int, default=2000,
                        help="training images (default 2000)")
    parser.add_argument("--num_val", type=int, default=500, help="validation images (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--force", action="store_true",
                        help="regenerate even if ROOT already holds this exact dataset")
    return parser.parse_args(argv)


def print_summary(summary: dict[str, Any], seconds: float) -> None:
    """Per-split image and object counts, then objects per category."""
    splits = summary["splits"]
    print(f"Wrote the demo dataset to {summary['root']} in {seconds:.1f} s "
          f"(seed {summary['parameters']['seed']})")
    print(f"  {'split':<12}{'images':>8}{'empty':>8}{'objects':>9}")
    for name, counts in splits.items():
        print(f"  {name:<12}{counts['images']:>8}{counts['empty_images']:>8}{counts['objects']:>9}")
    print(f"  {'category':<14}{'id':>4}" + "".join(f"{name:>11}" for name in splits))
    for category in CATEGORIES:
        objects = "".join(f"{counts['objects_per_category'][category.name]:>11}"
                          for counts in splits.values())
        print(f"  {category.name:<14}{category.category_id:>4}{objects}")


def main(argv: Sequence[str] | None = None) -> None:
    """Write the dataset unless ROOT already holds one made with the same parameters."""
    args = parse_args(argv)
    parameters = {"num_train": args.num_train, "num_val": args.num_val, "seed": args.seed}
    if not args.force and is_up_to_date(args.root, **parameters):
        print(f"{args.root} already holds the demo dataset for {args.num_train} train / "
              f"{args.num_val} val images, seed {args.seed}: skipped (--force regenerates it)")
        return
    start = time.perf_counter()
    summary = generate_demo_dataset(args.root, **parameters)
    print_summary(summary, time.perf_counter() - start)


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 written or up to date, 2 a mistake in the input."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
