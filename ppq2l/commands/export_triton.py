"""Write a Triton Inference Server model repository for an exported model:
ppq2l-export-triton (or python tools/export_triton.py) --model_dir inference/MODEL --output REPO
or, exporting a checkpoint first (as tools/export_model.py does, into Global.save_inference_dir):
ppq2l-export-triton -c CONFIG.yaml -o Global.pretrained_model=PATH --output REPO
The repository holds the ONNX model (onnxruntime backend), python-backend preprocess and
postprocess models and an ensemble NAME: a client sends encoded image bytes and gets labels."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence

from ppq2l.cli import run_cli
from ppq2l.errors import ConfigError
from ppq2l.export.triton.model_config import KINDS, ServingOptions

# the options of ServingOptions, with its defaults: each is the command-line option of that name
DEFAULTS = {field.name: field.default for field in dataclasses.fields(ServingOptions) if field.init}


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_argument_group("the model (one of)")
    source.add_argument("--model_dir", help="an export folder of tools/export_model.py (or its model.onnx)")
    source.add_argument("-c", "--config", help="a training config, to export Global.pretrained_model first")
    source.add_argument("-o", "--override", action="append", default=[], metavar="Key.sub=value",
                        help="override a config value (repeatable; with -c)")
    parser.add_argument("--output", required=True, help="the repository folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--name", default=DEFAULTS["name"],
                        help="the ensemble's name; the models are NAME_preprocess, NAME_onnx, NAME_postprocess")
    parser.add_argument("--max_batch_size", type=int, default=DEFAULTS["max_batch_size"])
    parser.add_argument("--preferred_batch_sizes", type=int, nargs="+",
                        default=list(DEFAULTS["preferred_batch_sizes"]),
                        help=f"batch sizes the dynamic batcher aims for (default "
                             f"{' '.join(map(str, DEFAULTS['preferred_batch_sizes']))})")
    parser.add_argument("--max_queue_delay_us", type=int, default=DEFAULTS["max_queue_delay_us"],
                        help="how long the batcher waits to fill a batch, microseconds")
    parser.add_argument("--kind", choices=tuple(KINDS), default=DEFAULTS["kind"], help="where the ONNX model runs")
    parser.add_argument("--instances", type=int, default=DEFAULTS["instances"],
                        help="instances of the ONNX model (per GPU with --kind gpu)")
    parser.add_argument("--python_instances", type=int, default=DEFAULTS["python_instances"],
                        help="CPU instances of the preprocess and postprocess models each")
    parser.add_argument("--python_env", default=DEFAULTS["python_env"],
                        help="a Python environment with ppq2l installed, for the python models "
                             "(EXECUTION_ENV_PATH: a folder or conda-pack archive, as the server sees it); "
                             "default: the server's own Python")
    parser.add_argument("--tensorrt", action="store_true",
                        help="run the ONNX model through onnxruntime's TensorRT accelerator")
    parser.add_argument("--tensorrt_fp16", action="store_true", help="TensorRT in float16 (with --tensorrt)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Check the options, export first when a config is given, write the repository."""
    args = parse_arguments(argv)
    from ppq2l.export.triton.repository import check_target, write_repository

    options = ServingOptions(**{name: getattr(args, name) for name in DEFAULTS})
    if (args.model_dir is None) == (args.config is None):
        raise ConfigError("give the model with --model_dir (an export folder) or with -c CONFIG "
                          "-o Global.pretrained_model=PATH (exported first), not both")
    if args.override and args.config is None:
        raise ConfigError("-o overrides a config value and needs -c CONFIG")
    check_target(Path(args.output).expanduser(), args.overwrite)  # before a possibly long export
    model_dir = args.model_dir
    if args.config is not None:
        from ppq2l.config import get_config

        config = get_config(args.config, args.override)  # mistakes answer before torch is imported
        from ppq2l.export.onnx_export import export_from_config

        model_dir = export_from_config(config)["onnx"]
    summary = write_repository(model_dir, args.output, options, overwrite=args.overwrite)
    print(f"wrote the Triton repository {summary['repository']} ({summary['precision']}, "
          f"{summary['class_num']} classes): ensemble {options.names['ensemble']}, models "
          f"{', '.join(name for key, name in summary['models'].items() if key != 'ensemble')}")
    return summary


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 written, 2 a mistake in the input (nothing written)."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
