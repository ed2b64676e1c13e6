"""Train a model: ppq2l-train (or python tools/train.py) -c CONFIG.yaml [-o Key.sub=value ...]"""
from __future__ import annotations

import sys
from typing import Any, Sequence

from ppq2l.cli import run_cli
from ppq2l.config import get_config, parse_args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Build the Trainer from the config and train; returns the best metric record."""
    args = parse_args(argv, description=__doc__)
    config = get_config(args.config, args.override)  # mistakes answer before the heavy imports
    from ppq2l.engine import Trainer

    return Trainer(config).train()


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 trained, 2 a mistake in the input, 128 + N stopped by signal N (saved)."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
