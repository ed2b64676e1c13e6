"""Evaluate a checkpoint: python tools/eval.py -c CONFIG.yaml -o Global.pretrained_model=PATH"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from ppq2l.cli import run_cli  # noqa: E402
from ppq2l.config import get_config, parse_args  # noqa: E402


def main(argv=None) -> None:
    """Evaluate Global.pretrained_model on DataLoader.Eval and write eval_metrics.json."""
    args = parse_args(argv, description=__doc__)
    config = get_config(args.config, args.override)  # mistakes answer before the heavy imports
    from ppq2l.engine import evaluate_from_config

    evaluate_from_config(config)


if __name__ == "__main__":
    sys.exit(run_cli(main))
