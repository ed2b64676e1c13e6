"""INT8 quantization of an exported model: ppq2l-quantize (or python tools/quantize.py)
--model_dir inference/MODEL --save_dir inference/MODEL_int8
[-c CONFIG.yaml] [--calib_list LIST --calib_root DIR] [--eval_list LIST --eval_root DIR]
[--method Percentile|MinMax|Entropy|compare] [--num_calib 256] [--max_map_drop 1.0] [--force]
Calibrates onnxruntime's static QDQ quantization (per-channel int8 weights) on images through the
model's own preprocessing, keeps the sigmoid and the logits layer in float, then scores the eval
list with the float and the int8 model. When the int8 mAP is more than --max_map_drop points
lower, nothing is written (--force writes anyway); otherwise --save_dir gets model.onnx and
inference.yml, as the exporter writes them, for the deploy predictor. Without -c, the lists are
given with --calib_list and --eval_list (their roots default to the list's folder)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from ppq2l.cli import run_cli
from ppq2l.errors import ConfigError
from ppq2l.utils.logger import get_logger

# Measured on the demo model (see the README's INT8 section): Percentile kept the most mAP.
DEFAULT_METHOD = "Percentile"


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    from ppq2l.export.quantize import METHODS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="export folder of the float model")
    parser.add_argument("--save_dir", required=True, help="folder for the int8 model")
    parser.add_argument("-c", "--config", help="training config: its Train list calibrates, its "
                                               "Eval list gates")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="Key.sub=value")
    parser.add_argument("--calib_list", help="list file of calibration images")
    parser.add_argument("--calib_root", help="folder the calibration list's paths start from")
    parser.add_argument("--eval_list", help="list file of labelled images for the mAP gate")
    parser.add_argument("--eval_root", help="folder the eval list's paths start from")
    parser.add_argument("--num_calib", type=int, default=256, help="calibration images used")
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=[*METHODS, "compare"],
                        help="calibration method; compare tries each and keeps the best mAP")
    parser.add_argument("--max_map_drop", type=float, default=1.0,
                        help="largest mAP loss in points that is written")
    parser.add_argument("--force", action="store_true", help="write even above --max_map_drop")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_workers", type=int, default=2)
    arguments = parser.parse_args(argv)
    if arguments.num_calib < 1 or arguments.max_map_drop < 0:
        parser.error("--num_calib must be >= 1 and --max_map_drop >= 0")
    return arguments


def dataset_lists(arguments: argparse.Namespace) -> dict[str, tuple[Any, Any, str]]:
    """(list, root, option that sets it) for calibration and evaluation: the command line first,
    then the config's Train and Eval datasets."""
    datasets: dict[str, dict] = {}
    if arguments.config:
        from ppq2l.config import get_config

        config = get_config(arguments.config, arguments.override)
        for role, split in (("calibration", "Train"), ("eval", "Eval")):
            datasets[role] = ((config.get("DataLoader") or {}).get(split) or {}).get("dataset") or {}
    lists = {}
    for role, flag in (("calibration", "calib"), ("eval", "eval")):
        given = getattr(arguments, f"{flag}_list")
        section = datasets.get(role, {})
        split = "Train" if role == "calibration" else "Eval"
        option = f"--{flag}_list" if given or not section else (
            f"DataLoader.{split}.dataset.cls_label_path of {arguments.config}")
        lists[role] = (given or section.get("cls_label_path"),
                       getattr(arguments, f"{flag}_root") or section.get("image_root"), option)
    return lists


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    arguments = parse_arguments(argv)
    logger = get_logger()
    model_dir, save_dir = Path(arguments.model_dir).expanduser(), Path(arguments.save_dir).expanduser()
    from ppq2l.export.onnx_runtime import resolve_model_path

    model_path = resolve_model_path(model_dir)  # --model_dir may be the folder or its model.onnx
    if save_dir.resolve() == model_path.parent.resolve():
        raise ConfigError(f"--save_dir {save_dir} is the float model's folder: the int8 model "
                          f"would replace the model it is checked against; give another folder")
    lists = dataset_lists(arguments)  # a missing list is named before any heavy work
    from ppq2l.export.quantize import run_quantization

    report = run_quantization(model_path, save_dir, lists,
                              method=arguments.method, num_calib=arguments.num_calib,
                              max_map_drop=arguments.max_map_drop, force=arguments.force,
                              batch_size=arguments.batch_size, num_workers=arguments.num_workers,
                              logger=logger)
    print(json.dumps(report))
    return report


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 written, 2 a mistake in the input or an int8 model over --max_map_drop."""
    logging.getLogger("onnxruntime").setLevel(logging.WARNING)
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
