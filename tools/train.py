"""Train a model: python tools/train.py -c CONFIG.yaml [-o Key.sub=value ...]"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from ppq2l.cli import run_cli  # noqa: E402
from ppq2l.config import get_config, parse_args  # noqa: E402


def main(argv=None) -> None:
    """Build the Trainer from the config and train."""
    args = parse_args(argv, description=__doc__)
    config = get_config(args.config, args.override)  # mistakes answer before the heavy imports
    from ppq2l.engine import Trainer

    Trainer(config).train()


if __name__ == "__main__":
    sys.exit(run_cli(main))
