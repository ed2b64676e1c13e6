"""Evaluate a checkpoint: ppq2l-eval (or python tools/eval.py) -c CONFIG.yaml
-o Global.pretrained_model=PATH"""
from __future__ import annotations

import sys
from typing import Any, Sequence

from ppq2l.cli import run_cli
from ppq2l.config import get_config, parse_args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate Global.pretrained_model on DataLoader.Eval and write eval_metrics.json."""
    args = parse_args(argv, description=__doc__)
    config = get_config(args.config, args.override)  # mistakes answer before the heavy imports
    from ppq2l.engine import evaluate_from_config

    return evaluate_from_config(config)


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 evaluated, 2 a mistake in the input."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
