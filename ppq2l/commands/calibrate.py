"""Fit per-class thresholds: ppq2l-calibrate (or python tools/calibrate.py) -c CONFIG.yaml
-o Global.pretrained_model=PATH [-o Calibrate.policy=f1|precision:P|recall:R|fixed:T]
writes Global.output_dir/thresholds.json (Calibrate.output) and prints the macro/micro F1 of the
calibrated thresholds on images they were not fitted on, next to one threshold of 0.5."""
from __future__ import annotations

import sys
from typing import Any, Sequence

from ppq2l.cli import run_cli
from ppq2l.config import get_config, parse_args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Calibrate Global.pretrained_model on DataLoader.Eval (or Calibrate.dataset)."""
    args = parse_args(argv, description=__doc__)
    config = get_config(args.config, args.override)  # mistakes answer before the heavy imports
    from ppq2l.calibration.run import calibrate_from_config, format_summary

    document = calibrate_from_config(config)
    print(f"saved {document['path']} (policy {document['policy']})")
    print(format_summary(document["summary"], document["held_out"]["method"]))
    return document


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 calibrated, 2 a mistake in the input."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
