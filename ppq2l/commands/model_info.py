"""Model size and cost: ppq2l-model-info (or python tools/model_info.py) -c CONFIG.yaml
[-o Key.sub=value ...] prints total/trainable parameters and GFLOPs at Global.image_shape."""
from __future__ import annotations

import sys
from typing import Sequence

from ppq2l.cli import run_cli
from ppq2l.config import get_config, parse_args


def main(argv: Sequence[str] | None = None) -> None:
    """Print total/trainable parameters and GFLOPs (multiply-adds) at Global.image_shape."""
    args = parse_args(argv, description=__doc__)
    config = get_config(args.config, args.override)  # mistakes answer before the heavy imports
    from ppq2l.utils.model_info import model_info_from_config

    print(model_info_from_config(config).report())


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 printed, 2 a mistake in the input."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
