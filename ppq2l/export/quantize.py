"""INT8 post-training quantization of an exported model with onnxruntime: static (calibrated)
activations, QDQ format, per-channel int8 weights. The calibration images go through the
model's own preprocessing (the one the deploy predictor applies), the output sigmoid and the
layer producing the logits stay in float (their int8 rounding would move scores across the
thresholds), and the result is gated on the mAP it keeps on an eval list. No torch."""
from __future__ import annotations

import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from ppq2l.data.text_files import read_utf8_text
from ppq2l.errors import ConfigError, DataError
from ppq2l.export.metadata import (
    DESCRIPTION_FILE,
    MODEL_FILE,
    attach_metadata,
    read_model_description,
    write_inference_yml,
)
from ppq2l.export.staging import staged_export
from ppq2l.predict import Predictor
from ppq2l.utils.atomic_write import prepare_output_dir

METHODS = {"MinMax": CalibrationMethod.MinMax, "Entropy": CalibrationMethod.Entropy,
           "Percentile": CalibrationMethod.Percentile}
# ops that compute the logits from features, and ops that may sit between them and the sigmoid
LINEAR_OPS = {"MatMul", "Gemm", "Einsum", "Conv"}
# the ops onnxruntime's CPU kernels run in int8; quantizing the glue between them (Add,
# Reshape, Concat, ...) only adds quantize/dequantize pairs and makes the model slower
QUANTIZED_OPS = {"Conv", "MatMul", "Gemm"}
# uint8 activations with int8 weights (U8S8): the pairing x86 VNNI instructions multiply directly;
# int8 activations ran 2-3x slower than it on a VNNI CPU for a ResNet-50 Q2L (see the README)
MAP_TIE_POINTS = 0.05
HEAD_OPS = {"Add", "Sub", "Mul", "Div", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose",
            "Identity", "Cast"}


class QuantizeRefused(ConfigError):
    """The int8 model loses more mAP than allowed; nothing was written."""


# ----------------------------------------------------------------------------- image lists
@dataclass
class ImageList:
    """Image files (under their root) of a list file, with their 0/1 labels when it has them."""

    paths: list[Path]
    labels: np.ndarray | None
    source: str


def read_image_list(list_path: str | os.PathLike | None, image_root: str | os.PathLike | None,
                    role: str, option: str, class_num: int | None = None) -> ImageList:
    """The images of a list file in the dataset format (`relative/path.jpg<TAB>0,1,...`; for
    calibration the labels may be left out). `class_num` given: the labels are read and checked.
    A missing list, root or image is a DataError naming `option`."""
    if not list_path:
        raise DataError(f"no {role} images: give {option} (a list file of 'relative/path.jpg"
                        f"<TAB>0,1,...' rows) or -c CONFIG with that dataset in its DataLoader")
    list_path = Path(list_path).expanduser()
    root = Path(image_root).expanduser() if image_root else list_path.parent
    if not root.is_dir():
        raise DataError(f"{role} image root {root} is not a folder")
    if class_num is not None:
        from ppq2l.data.list_dataset import read_label_list  # the dataset's own parser and checks

        names, labels, _ = read_label_list(list_path, class_num)
    else:
        if not list_path.is_file():
            raise DataError(f"{option}: the list file {list_path} does not exist")
        # a row is the image path, with or without its labels after a TAB
        names = [line.split("\t")[0].strip()
                 for line in read_utf8_text(list_path, "list file").splitlines() if line.strip()]
        labels = None
        if not names:
            raise DataError(f"{option}: the list file {list_path} lists no images")
    paths = [root / name for name in names]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DataError(f"{option}: {len(missing)} {role} images of {list_path} are missing under "
                        f"{root}: {shown}")
    return ImageList(paths, labels, str(list_path))


def spread_sample(items: Sequence, count: int) -> list:
    """`count` items spread evenly over `items` (all of them when there are fewer): a list
    sorted by name or class still gives a calibration set covering it."""
    if count >= len(items):
        return list(items)
    return [items[int(index)] for index in np.linspace(0, len(items) - 1, count).round()]


def decode_batches(predictor: Predictor, paths: Sequence[Path], folder: Path,
                   batch_size: int = 16) -> list[Path]:
    """The calibration images through a predictor's preprocessing, once: one .npy file of a batch
    each in `folder` (memory holds one batch; every calibration method reads them back)."""
    files = []
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start:start + batch_size])
        try:
            batch = np.stack([predictor.preprocess(path) for path in chunk])
        except (DataError, OSError) as error:
            raise DataError(f"calibration image in {chunk[0].parent}: {error}") from None
        files.append(folder / f"calibration_{len(files):06d}.npy")
        np.save(files[-1], batch)
    return files


class ImageBatches(CalibrationDataReader):
    """onnxruntime's calibration reader over the batches `decode_batches` wrote."""

    def __init__(self, files: Sequence[Path], input_name: str) -> None:
        self.files, self.input_name = list(files), input_name
        self._batches: Iterator[dict] | None = None

    def _generate(self) -> Iterator[dict]:
        for path in self.files:
            yield {self.input_name: np.load(path)}

    def get_next(self) -> dict | None:
        if self._batches is None:
            self._batches = self._generate()
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = None


# ------------------------------------------------------------------------------ the graph
def float_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes kept in float: every Sigmoid, and above each the chain of ops with one
    computed input (the others weights) that ends at the linear layer making the logits
    (MatMul, Gemm, Einsum or Conv, included). A ConfigError when no such layer is found."""
    constants = {init.name for init in model.graph.initializer}
    constants |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    producer = {out: node for node in model.graph.node for out in node.output}
    kept: list[str] = []
    for sigmoid in (node for node in model.graph.node if node.op_type == "Sigmoid"):
        kept.append(sigmoid.name)
        node, found = producer.get(sigmoid.input[0]), False
        while node is not None and (node.op_type in HEAD_OPS or node.op_type in LINEAR_OPS):
            computed = [name for name in node.input if name and name not in constants]
            if node.op_type in LINEAR_OPS:
                kept.append(node.name)
                found = True
                break
            if len(computed) != 1:
                break
            kept.append(node.name)
            node = producer.get(computed[0])
        if not found:
            raise ConfigError(f"cannot find the linear layer that makes the logits above the "
                              f"sigmoid {sigmoid.name!r} (expected {', '.join(sorted(LINEAR_OPS))} "
                              f"through {', '.join(sorted(HEAD_OPS))}); is this a ppq2l export?")
    if not kept:
        raise ConfigError("the model has no Sigmoid: a ppq2l export ends with the sigmoid scores")
    return kept


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (exclusion lists name nodes)."""
    used = {node.name for node in model.graph.node}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def prepare_for_quantization(fp32_path: Path, prepared: Path, logger: logging.Logger) -> None:
    """Shape inference and graph optimisation before quantization, as onnxruntime recommends.
    Its symbolic shape inference gives up on some graphs (Query2Label at output stride 16 among
    them: "Incomplete symbolic shape inference"); ONNX's own shape inference is then used, which
    leaves a few shapes unknown and those tensors unquantized at worst. The failing inference
    saves its partial model into the working folder, so it runs from `prepared`'s folder (a
    scratch folder; no image is being read while this runs)."""
    source, target = str(Path(fp32_path).resolve()), str(Path(prepared).resolve())
    with working_folder(Path(target).parent):
        try:
            quant_pre_process(source, target)
            return
        except Exception as error:  # onnxruntime raises a plain Exception here
            logger.info("onnxruntime's symbolic shape inference failed on %s (%s); using ONNX "
                        "shape inference", fp32_path, str(error).strip()[:200])
        try:
            quant_pre_process(source, target, skip_symbolic_shape=True)
        except Exception as error:  # as above
            raise ConfigError(f"cannot prepare {fp32_path} for quantization: shape inference "
                              f"failed ({str(error).strip()[:300]})") from None


@contextmanager
def working_folder(folder: Path) -> Iterator[None]:
    """Run the block with `folder` as the working folder (contextlib.chdir from Python 3.11)."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def prepare_model(fp32_path: Path, scratch: Path, logger: logging.Logger) -> tuple[Path, list[str]]:
    """The graph every calibration method quantizes, prepared once into the folder `scratch`
    (its nodes named), and the names of the nodes kept in float."""
    prepared = scratch / "prepared.onnx"
    prepare_for_quantization(fp32_path, prepared, logger)
    model = onnx.load(str(prepared))
    name_nodes(model)
    keep = float_nodes(model)
    logger.info("kept in float: %s", ", ".join(keep))
    named = scratch / "named.onnx"
    # a file, not the ModelProto: quantize_static moves the weights of a ModelProto it is given
    # into its own temporary files, which a second method would then miss
    onnx.save(model, str(named), save_as_external_data=True, location="named.onnx.data")
    return named, keep


def quantize_prepared(prepared: Path, keep: list[str], int8_path: Path,
                      reader: CalibrationDataReader, method: str) -> None:
    """Write the int8 QDQ model of the `prepared` graph to `int8_path`, calibrated on `reader`
    with `method`, the nodes `keep` left in float."""
    reader.rewind()
    quantize_static(str(prepared), str(int8_path), reader, quant_format=QuantFormat.QDQ,
                    per_channel=True, op_types_to_quantize=sorted(QUANTIZED_OPS),
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=keep,
                    calibrate_method=METHODS[method],
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
                    calibration_cache_path=None)


# ------------------------------------------------------------------------------- the tool
def choose_method(tried: dict[str, dict[str, float]], tie_points: float = MAP_TIE_POINTS) -> str:
    """The calibration method whose int8 model kept the most mAP; methods within `tie_points` of
    the best are a tie (a few images' ranks), broken by the scores closest to the float model's."""
    best_map = max(result["int8_map"] for result in tried.values())
    tied = [name for name, result in tried.items() if result["int8_map"] >= best_map - tie_points]
    return min(tied, key=lambda name: tried[name]["score_mean_abs_diff"])


def scored_map(predictor: Predictor, images: ImageList) -> tuple[float, np.ndarray, float]:
    """mAP in points of `predictor` on the labelled images, their scores, and the seconds the
    scoring took."""
    from ppq2l.metric.functional import mean_average_precision

    began = time.perf_counter()
    scores = predictor.scores(images.paths)
    return mean_average_precision(scores, images.labels), scores, time.perf_counter() - began


def run_quantization(fp32_path: Path, save_dir: Path, lists: dict[str, tuple[Any, Any, str]], *,
                     method: str, num_calib: int, max_map_drop: float, force: bool,
                     batch_size: int, num_workers: int, logger: logging.Logger) -> dict[str, Any]:
    """Calibrate, quantize, gate on the eval mAP and write `save_dir`; returns the report.
    `lists` maps "calibration" and "eval" to (list file, image root, option naming them)."""
    metadata = read_model_description(fp32_path)[1]
    calibration = read_image_list(*lists["calibration"][:2], "calibration", lists["calibration"][2])
    evaluation = read_image_list(*lists["eval"][:2], "eval", lists["eval"][2],
                                 class_num=int(metadata["class_num"]))
    calibration_paths = spread_sample(calibration.paths, num_calib)
    created = not save_dir.exists()
    prepare_output_dir(save_dir, "--save_dir")  # a file, a path under a file, read-only: one error line
    try:
        fp32 = Predictor(fp32_path, batch_size=batch_size, num_workers=num_workers)
        with tempfile.TemporaryDirectory(prefix="ppq2l-quantize-") as scratch:
            return _quantize_into(fp32_path, save_dir, Path(scratch), metadata, calibration,
                                  calibration_paths, evaluation, fp32, method=method,
                                  max_map_drop=max_map_drop, force=force, batch_size=batch_size,
                                  num_workers=num_workers, logger=logger)
    except BaseException:
        if created and not any(save_dir.iterdir()):
            save_dir.rmdir()  # a refused or failed run leaves no trace
        raise


def _quantize_into(fp32_path: Path, save_dir: Path, scratch: Path, metadata: dict,
                   calibration: ImageList, calibration_paths: list[Path], evaluation: ImageList,
                   fp32: Predictor, *, method: str, max_map_drop: float, force: bool,
                   batch_size: int, num_workers: int, logger: logging.Logger) -> dict[str, Any]:
    """The part of `run_quantization` that writes into `save_dir` (through a staging folder). The
    graph is prepared and the calibration images are decoded once (in `scratch`), whatever the
    number of calibration methods tried."""
    began = time.perf_counter()
    prepared, keep = prepare_model(fp32_path, scratch, logger)
    prepare_seconds, began = time.perf_counter() - began, time.perf_counter()
    reader = ImageBatches(decode_batches(fp32, calibration_paths, scratch, batch_size),
                          metadata["input_name"])
    decode_seconds = time.perf_counter() - began
    fp32_map, fp32_scores, fp32_seconds = scored_map(fp32, evaluation)
    logger.info("float model: mAP %.2f on %d images of %s", fp32_map, len(evaluation.paths),
                evaluation.source)
    tried: dict[str, dict[str, float]] = {}
    with staged_export(save_dir, last=[MODEL_FILE]) as staging:
        for name in METHODS if method == "compare" else [method]:
            candidate = staging / f"candidate_{name}.onnx"
            began = time.perf_counter()
            quantize_prepared(prepared, keep, candidate, reader, name)
            calibrate_seconds = time.perf_counter() - began
            int8 = Predictor(candidate, batch_size=batch_size, num_workers=num_workers)
            int8_map, int8_scores, int8_seconds = scored_map(int8, evaluation)
            error = float(np.abs(int8_scores - fp32_scores).mean())
            tried[name] = {"int8_map": int8_map, "map_drop": fp32_map - int8_map,
                           "score_mean_abs_diff": error,
                           "quantize_seconds": calibrate_seconds, "eval_seconds": int8_seconds}
            logger.info("%s calibration: int8 mAP %.2f (float %.2f, drop %.2f points), scores "
                        "%.5f from the float model's on average", name, int8_map, fp32_map,
                        fp32_map - int8_map, error)
        chosen = choose_method(tried)
        int8_map = tried[chosen]["int8_map"]
        drop = fp32_map - int8_map
        report = {"model": str(fp32_path), "save_dir": str(save_dir), "method": chosen,
                  "methods_tried": tried, "fp32_map": fp32_map, "int8_map": int8_map,
                  "map_drop": drop, "max_map_drop": max_map_drop, "eval_list": evaluation.source,
                  "eval_images": len(evaluation.paths), "calibration_list": calibration.source,
                  "calibration_images": len(calibration_paths), "kept_in_float": keep,
                  "fp32_eval_seconds": fp32_seconds, "prepare_seconds": prepare_seconds,
                  "calibration_decode_seconds": decode_seconds}
        if drop > max_map_drop and not force:
            raise QuantizeRefused(
                f"the int8 model ({chosen} calibration) has mAP {int8_map:.2f} against {fp32_map:.2f} "
                f"for the float model on {evaluation.source}: {drop:.2f} points lost, more than "
                f"--max_map_drop {max_map_drop}; nothing written to {save_dir} (--force writes it "
                f"anyway; --method compare tries every calibration method; more --num_calib images "
                f"may help)")
        if drop > max_map_drop:
            logger.warning("writing the int8 model although it loses %.2f mAP points (--force)", drop)
        written = onnx.load(str(staging / f"candidate_{chosen}.onnx"))
        described = dict(metadata, precision="int8", quantization={
            "method": chosen, "format": "QDQ", "weights": "int8 per channel",
            "activations": "uint8", "calibration_images": len(calibration_paths),
            "kept_in_float": keep, "fp32_map": round(fp32_map, 4), "int8_map": round(int8_map, 4),
            "eval_list": evaluation.source})
        attach_metadata(written, described)
        onnx.save(written, str(staging / MODEL_FILE))
        for name in tried:
            (staging / f"candidate_{name}.onnx").unlink()
        write_inference_yml(staging / DESCRIPTION_FILE, described)
    return report
