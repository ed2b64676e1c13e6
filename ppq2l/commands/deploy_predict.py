"""Multi-label prediction with an exported ONNX model and onnxruntime, without torch:
ppq2l-deploy-predict (or python deploy/python/predict_multilabel.py)
    -c deploy/configs/inference_multilabel.yaml -o Global.infer_imgs=PATH_OR_DIR
    -o Global.inference_model_dir=DIR
Prints one JSON record per file; unreadable files and NaN/Inf scores get an error record and the
exit status is 1. With -o Global.save_visual_dir=DIR and a model exported with
Global.export_attention=True, each predicted label's map is drawn over its image into DIR."""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
from typing import Any, Sequence

from ppq2l.cli import run_cli
from ppq2l.config import apply_override, read_yaml
from ppq2l.data.image_files import iter_image_files
from ppq2l.errors import ConfigError
from ppq2l.explain.render import OverlayWriter
from ppq2l.export.onnx_runtime import onnx_backend
from ppq2l.predict import Predictor, failure_line
from ppq2l.utils.atomic_write import atomic_output, prepare_output_dir, prepare_output_file
from ppq2l.utils.logger import get_logger

GLOBAL_KEYS: dict[str, tuple[type, ...]] = {
    "infer_imgs": (str,), "inference_model_dir": (str,), "batch_size": (int,), "use_gpu": (bool,),
    "use_tensorrt": (bool,), "use_fp16": (bool,), "cpu_num_threads": (int,), "save_path": (str,),
    "benchmark": (bool,), "save_visual_dir": (str,), "num_workers": (int,), "use_io_binding": (bool,),
}
GLOBAL_DEFAULTS: dict[str, Any] = {"batch_size": 1, "use_gpu": False, "use_tensorrt": False,
                                   "use_fp16": False, "cpu_num_threads": None, "save_path": None,
                                   "benchmark": False, "save_visual_dir": None, "num_workers": 2,
                                   "use_io_binding": True}
SECTIONS = ("Global", "PreProcess", "PostProcess")
NO_TORCH_STATUS = 3


def load_deploy_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict:
    """Read the deploy YAML, apply `-o Key.sub=value` overrides and check the Global keys."""
    config = read_yaml(path)
    if not isinstance(config, dict) or not isinstance(config.get("Global"), dict):
        raise ConfigError(f"{path}: the deploy config needs a Global mapping")
    for section in SECTIONS:
        config.setdefault(section, None)
    for key, value in GLOBAL_DEFAULTS.items():
        config["Global"].setdefault(key, value)
    for text in overrides:
        apply_override(config, text)
    for section in config:
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section {section!r}; expected {', '.join(SECTIONS)}")
    for key, value in config["Global"].items():
        if key not in GLOBAL_KEYS:
            raise ConfigError(f"Global.{key}: unknown key; valid keys: {', '.join(GLOBAL_KEYS)}")
        kinds = GLOBAL_KEYS[key]
        if value is not None and (not isinstance(value, kinds) or
                                  (isinstance(value, bool) and bool not in kinds)):
            raise ConfigError(f"Global.{key} must be {' or '.join(k.__name__ for k in kinds)}, "
                              f"got {value!r}")
    for key in ("infer_imgs", "inference_model_dir"):
        if not config["Global"].get(key):
            raise ConfigError(f"Global.{key} is required (set it with -o Global.{key}=PATH)")
    for key, smallest, meaning in (("batch_size", 1, "images per model run"),
                                   ("num_workers", 0, "preprocessing threads; 0 preprocesses in "
                                                      "the main thread")):
        value = config["Global"][key]
        if value is None or value < smallest:
            raise ConfigError(f"Global.{key} must be an int >= {smallest} ({meaning}), got {value!r}")
    return config


def override_sections(config: dict) -> tuple[list[dict] | None, dict | None]:
    """The optional PreProcess.transform_ops and PostProcess that replace the model's own."""
    preprocess = config.get("PreProcess")
    ops = None
    if preprocess is not None:
        if not isinstance(preprocess, dict) or not isinstance(preprocess.get("transform_ops"), list):
            raise ConfigError(f"PreProcess must be null or {{transform_ops: [...]}}, got {preprocess!r}")
        ops = preprocess["transform_ops"]
    postprocess = config.get("PostProcess")
    if postprocess is not None and not isinstance(postprocess, dict):
        raise ConfigError(f"PostProcess must be null or {{name: ..., ...}}, got {postprocess!r}")
    return ops, postprocess


def run(config: dict) -> tuple[int, list[str]]:
    """Predict every file of Global.infer_imgs, printing each record (and saving it) as soon as
    its batch is scored: the folder is read lazily and no record is kept, so memory stays flat
    on any number of files. Returns the number of records and the names of the failed files."""
    settings = config["Global"]
    logger = get_logger()
    ops, postprocess = override_sections(config)
    # checked before the model is loaded, so a bad path does not cost the whole run
    save_path = (prepare_output_file(settings["save_path"], "Global.save_path")
                 if settings["save_path"] is not None else None)
    visual_dir = (prepare_output_dir(settings["save_visual_dir"], "Global.save_visual_dir")
                  if settings["save_visual_dir"] is not None else None)
    backend = onnx_backend(settings["inference_model_dir"], use_gpu=settings["use_gpu"],
                           use_tensorrt=settings["use_tensorrt"], use_fp16=settings["use_fp16"],
                           cpu_num_threads=settings["cpu_num_threads"],
                           use_io_binding=settings["use_io_binding"], logger=logger)
    predictor = Predictor.from_backend(backend, batch_size=settings["batch_size"],
                                       num_workers=settings["num_workers"],
                                       transform_ops=ops, postprocess=postprocess, logger=logger,
                                       option_names=("PreProcess.transform_ops", "PostProcess"))
    logger.info("model %s on %s, %d preprocessing threads", backend.source, backend.device,
                settings["num_workers"])
    if visual_dir is not None:
        if backend.run_with_maps is None:
            raise ConfigError(f"Global.save_visual_dir draws per-label maps, but "
                              f"{backend.no_maps_reason}")
        predictor.explain_with(OverlayWriter(visual_dir, predictor.transforms.ops,
                                             predictor.postprocess.label_names,
                                             root=settings["infer_imgs"]))
    if settings["benchmark"]:
        predictor.warm_up(list(itertools.islice(
            iter_image_files(settings["infer_imgs"], "Global.infer_imgs"), 4 * settings["batch_size"])))
    files = iter_image_files(settings["infer_imgs"], "Global.infer_imgs")
    total, failed = 0, []
    with contextlib.ExitStack() as stack:
        saved = None if save_path is None else stack.enter_context(atomic_output(save_path, "w"))
        for record in predictor.iter_records((str(path), path) for path in files):
            line = json.dumps(record)
            print(line)
            if saved is not None:
                saved.write(line + "\n")
            total += 1
            if "error" in record:
                failed.append(record["file_name"])
    if settings["benchmark"]:
        timing = predictor.timer.per_image_ms()
        print(f"benchmark ({predictor.timer.images} images, batch {settings['batch_size']}, "
              f"{backend.device}): "
              + ", ".join(f"{stage} {value:.3f} ms/image" for stage, value in timing.items()),
              file=sys.stderr)
    if failed:
        print(failure_line(failed, total), file=sys.stderr)
    return total, failed


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """`-c CONFIG`, repeatable `-o Key.sub=value`, and the internal `--check-no-torch`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-c", "--config", required=True, help="path to the deploy YAML")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="Key.sub=value",
                        help="override a config value (repeatable)")
    parser.add_argument("--check-no-torch", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 all predicted, 1 some files failed, 2 config or model error, 3 when
    --check-no-torch finds torch imported."""
    arguments = parse_arguments(argv)
    outcome: dict = {}

    def predict(_: Any) -> None:
        outcome["failed"] = run(load_deploy_config(arguments.config, arguments.override))[1]

    status = run_cli(predict)
    if arguments.check_no_torch and "torch" in sys.modules:
        print("error: torch was imported by the deploy predictor", file=sys.stderr)
        return NO_TORCH_STATUS
    return (1 if outcome["failed"] else 0) if status == 0 else status


if __name__ == "__main__":
    sys.exit(cli())
