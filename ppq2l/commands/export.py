"""Export a checkpoint to ONNX for deployment: ppq2l-export (or python tools/export_model.py)
-c CONFIG.yaml -o Global.pretrained_model=PATH [-o Global.save_inference_dir=DIR]
writes DIR/model.onnx (with its preprocessing and label metadata) and DIR/inference.yml, after
checking onnxruntime against torch on random inputs; a failed export leaves DIR as it was."""
from __future__ import annotations

import sys
from typing import Any, Sequence

from ppq2l.cli import run_cli
from ppq2l.config import get_config, parse_args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Export Global.pretrained_model and print the files and the onnxruntime/torch differences."""
    args = parse_args(argv, description=__doc__)
    config = get_config(args.config, args.override)  # mistakes answer before the heavy imports
    from ppq2l.export.onnx_export import export_from_config

    summary = export_from_config(config)
    print(f"saved {summary['onnx']} and {summary['inference_yml']}")
    for shape, difference in summary["max_abs_diff"].items():
        print(f"onnxruntime vs torch, input {shape}: max abs diff {difference:.3g}")
    return summary


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 exported, 2 a mistake in the input or a failed check (nothing replaced)."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
