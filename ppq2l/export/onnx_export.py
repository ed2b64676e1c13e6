"""ONNX export of a trained model with a sigmoid on top, its metadata, and a parity check of
onnxruntime against torch on the same random inputs."""
from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ppq2l.data.transforms import CropImage, ResizeImage, build_transforms
from ppq2l.engine.checkpoint import first_nonfinite_tensor
from ppq2l.errors import CheckpointError, ConfigError, Ppq2lError
from ppq2l.export.metadata import (
    DESCRIPTION_FILE,
    MODEL_FILE,
    attach_metadata,
    build_metadata,
    write_inference_yml,
)
from ppq2l.export.staging import PromotionError, staged_export
from ppq2l.postprocess import build_postprocess
from ppq2l.predict import config_postprocess, inference_transforms
from ppq2l.utils.atomic_write import atomic_output, prepare_output_dir

OPSET_VERSION = 17
INPUT_NAME, OUTPUT_NAME, ATTENTION_NAME = "images", "scores", "attention"
FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2  # half precision keeps about three significant digits
EXPORT_BATCH = 2  # not 1, so the trace cannot specialise anything to a single image
CHECK_BATCHES = (1, 4)


class SigmoidScores(nn.Module):
    """The model followed by a sigmoid: images [B, 3, H, W] -> scores in [0, 1], [B, C]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.model(images))


def preprocess_output_size(ops: list[dict], where: str) -> tuple[int, int] | None:
    """(height, width) every image has after `ops`, or None when it depends on the image."""
    size: tuple[int, int] | None = None
    for op in build_transforms(ops, where).ops:
        if isinstance(op, ResizeImage):
            size = (op.size[1], op.size[0]) if op.size is not None else None
        elif isinstance(op, CropImage):
            size = (op.height, op.width)
    return size


def resolve_input_size(config: dict, ops: list[dict], dynamic_spatial: bool,
                       logger: logging.Logger | None = None, where: str = "transform_ops") -> list[int]:
    """[height, width] of the export input: the preprocessing's output size when it is fixed,
    else Global.image_shape (which then only shapes the trace of a dynamic-size export)."""
    image_shape = config["Global"].get("image_shape")
    if not isinstance(image_shape, list) or len(image_shape) != 3:
        raise ConfigError(f"Global.image_shape must be [channels, height, width], got {image_shape!r}")
    from_shape = [int(image_shape[1]), int(image_shape[2])]
    fixed = preprocess_output_size(ops, where)
    if fixed is None:
        if not dynamic_spatial:
            raise ConfigError(f"{where} gives images of varying size (resize_short without "
                              f"CropImage); add a fixed-size ResizeImage/CropImage or set "
                              f"Global.export_dynamic_spatial=True")
        return from_shape
    if list(fixed) != from_shape and logger is not None:
        logger.warning("Global.image_shape says %s but the inference transforms give %s; the "
                       "model is exported for %s", from_shape, list(fixed), list(fixed))
    return list(fixed)


def resolve_postprocess(config: dict, class_num: int, weights: str | os.PathLike | None = None,
                        logger: logging.Logger | None = None
                        ) -> tuple[dict, list[str] | None, dict | None]:
    """The postprocess config to embed (without file paths), the label names it reads and, when
    the thresholds come from a thresholds.json (`auto` for `weights`, or its path), where from."""
    settings = config_postprocess(config, weights, logger)
    postprocess = build_postprocess(settings, "Infer.PostProcess")
    thresholds = postprocess.thresholds_for(class_num)  # a list or file of the wrong length fails
    names = postprocess.label_names
    if names is not None and len(names) != class_num:
        raise ConfigError(f"Infer.PostProcess.class_id_map_file names {len(names)} classes but "
                          f"Arch.class_num is {class_num}")
    for key in ("class_id_map_file", "delimiter", "label_names"):
        settings.pop(key, None)  # the names travel in the metadata; a path would not
    calibration = None
    found = postprocess.thresholds_file
    if found is not None:  # the values travel, and what they were fitted on is named
        settings["threshold"] = [float(value) for value in thresholds]
        calibration = {"thresholds_file": str(found.path),
                       **{key: found.document.get(key) for key in ("policy", "fitted_on", "summary")}}
    return settings, names, calibration


def check_finite_weights(model: nn.Module, source: str) -> None:
    """Raise a CheckpointError naming the first weight or buffer of `model` (loaded from `source`)
    that holds NaN or Inf: such a model can only produce NaN/Inf scores."""
    weights = model.state_dict()
    name = first_nonfinite_tensor(weights)
    if name is not None:
        bad = int((~torch.isfinite(weights[name])).sum())
        raise CheckpointError(f"{source}: {name} holds NaN/Inf values ({bad} of "
                              f"{weights[name].numel()}), so the model produces NaN/Inf scores; "
                              f"export a checkpoint saved before the training diverged")


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int],
                dynamic_spatial: bool = False, half: bool = False, attention: bool = False) -> Path:
    """Trace `model` (already wrapped to give scores, or with `attention` scores and maps, see
    ScoresAndMaps) to an ONNX file at `path`, written atomically (a full disk is an OutputError
    in words, never a half-written file)."""
    device = next(model.parameters()).device
    dtype = torch.float16 if half else torch.float32
    example = torch.zeros(EXPORT_BATCH, 3, *input_size, device=device, dtype=dtype)
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_spatial else {0: "batch"}
    outputs = {OUTPUT_NAME: {0: "batch"}}
    if attention:
        outputs[ATTENTION_NAME] = ({0: "batch", 2: "map_height", 3: "map_width"}
                                   if dynamic_spatial else {0: "batch"})
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter warns about its own deprecation and about traced shape math
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=OPSET_VERSION,
                          input_names=[INPUT_NAME], output_names=list(outputs),
                          dynamic_axes={INPUT_NAME: axes, **outputs}, do_constant_folding=True)
    with atomic_output(path) as handle:
        handle.write(buffer.getbuffer())
    return Path(path)


def finish_onnx_file(path: str | os.PathLike, metadata: dict) -> None:
    """Attach the metadata to the exported file and validate it with the ONNX checker."""
    import onnx

    model_proto = onnx.load(str(path))
    attach_metadata(model_proto, metadata)
    try:
        onnx.checker.check_model(model_proto)
    except onnx.checker.ValidationError as error:
        raise Ppq2lError(f"the exported model fails the ONNX checker: {error}") from None
    with atomic_output(path) as handle:
        handle.write(model_proto.SerializeToString())


def check_parity(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int],
                 half: bool = False, dynamic_spatial: bool = False,
                 batches: Sequence[int] = CHECK_BATCHES, seed: int = 0,
                 source: str | None = None) -> dict[str, float]:
    """Max |onnxruntime - torch| of the scores (and of the attention maps, for a model that
    gives both, keyed `<shape> attention`) on random inputs, per checked shape; raises a
    Ppq2lError when one is above the tolerance (1e-4 in float32) or any value is NaN/Inf.
    `source` (the checkpoint) is what a message about the model's own scores names."""
    device = next(model.parameters()).device
    session = parity_session(path, on_gpu=half and device.type == "cuda")
    dtype = torch.float16 if half else torch.float32
    rng = np.random.default_rng(seed)
    shapes = [(batch, *input_size) for batch in batches]
    if dynamic_spatial:
        shapes.append((2, input_size[0] + 32, input_size[1] + 32))
    differences: dict[str, float] = {}
    for batch, height, width in shapes:
        shape = f"{batch}x3x{height}x{width}"
        images = rng.standard_normal((batch, 3, height, width)).astype(np.float32)
        with torch.no_grad():
            outputs = model(torch.from_numpy(images).to(device, dtype))
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        names = [OUTPUT_NAME, ATTENTION_NAME][:len(outputs)]
        feed = images.astype(np.float16) if half else images
        results = session.run(names, {INPUT_NAME: feed})
        for name, output, actual in zip(names, outputs, results):
            expected, actual = output.float().cpu().numpy(), actual.astype(np.float32)
            what = "scores" if name == OUTPUT_NAME else "attention maps"
            if not np.isfinite(expected).all():
                # the model itself is broken; a comparison with onnxruntime would say "differ by nan"
                hint = (" in float16 (an overflow: export in float32, Global.export_fp16=False)"
                        if half else "; its weights are finite, so check the checkpoint and the "
                        "Arch settings")
                origin = f" of {source}" if source else ""
                raise Ppq2lError(f"the model{origin} produces NaN/Inf {what} in torch for a random "
                                 f"{shape} input{hint}")
            if actual.shape != expected.shape:
                raise Ppq2lError(f"the exported graph gives {what} of shape {actual.shape} in "
                                 f"onnxruntime, torch {expected.shape}, for input {shape}")
            if not np.isfinite(actual).all():
                raise Ppq2lError(f"the exported graph gives NaN/Inf {what} in onnxruntime for a "
                                 f"random {shape} input where torch's {what} are finite")
            key = shape if name == OUTPUT_NAME else f"{shape} {name}"
            differences[key] = float(np.abs(actual - expected).max())
    tolerance = FP16_TOLERANCE if half else FP32_TOLERANCE
    worst = max(differences.values())
    if not worst <= tolerance:
        raise Ppq2lError(f"onnxruntime and torch outputs of the exported graph differ by up to "
                         f"{worst:.3g} (tolerance {tolerance:g}); per input: {differences}")
    return differences


def parity_session(path: str | os.PathLike, on_gpu: bool):
    """The onnxruntime session the parity check runs: a float16 export (made on a GPU, meant for
    one) on onnxruntime's CUDA provider where this onnxruntime has it, since its CPU float16
    kernels are slow and have crashed the whole process on a GPU host (a segmentation fault in a
    worker thread); a float32 export on the CPU."""
    from ppq2l.export.onnx_runtime import choose_providers, create_session

    logger = logging.getLogger(__name__)
    path = Path(path)
    return create_session(path, choose_providers(on_gpu, False, False, path.parent, logger), None, logger)


def export_from_config(config: dict) -> dict[str, Any]:
    """Export Global.pretrained_model to Global.save_inference_dir as model.onnx + inference.yml.
    The files are written and checked (ONNX checker, onnxruntime against torch) in a staging
    folder and replace an earlier export only when every check passed."""
    from ppq2l.engine.components import build_model_for_run, require_section, start_run

    weights = require_section(config, "Global.pretrained_model")
    settings = config["Global"]
    output_dir = prepare_output_dir(settings.get("save_inference_dir"), "Global.save_inference_dir")
    half, dynamic_spatial = bool(settings["export_fp16"]), bool(settings["export_dynamic_spatial"])
    attention = bool(settings["export_attention"])
    context = start_run(config, "export.log")
    if half and context.device.type != "cuda":
        raise ConfigError("Global.export_fp16=True exports in half precision on a GPU, and no CUDA "
                          "device is in use here (Global.device); float16 export on the CPU is not "
                          "supported: export in float32 (Global.export_fp16=False)")
    ops, where = inference_transforms(config, context.logger)
    input_size = resolve_input_size(config, ops, dynamic_spatial, context.logger, where)
    postprocess, label_names, calibration = resolve_postprocess(config, context.class_num, weights,
                                                                context.logger)
    metadata = build_metadata(arch=str(config["Arch"]["name"]), class_num=context.class_num,
                              input_size=input_size, preprocess=ops, postprocess=postprocess,
                              label_names=label_names, dynamic_spatial=dynamic_spatial,
                              precision="fp16" if half else "fp32",
                              input_name=INPUT_NAME, output_name=OUTPUT_NAME,
                              calibration=calibration,
                              attention_output=ATTENTION_NAME if attention else None)
    try:
        model = build_model_for_run(context, weights)
        check_finite_weights(model, str(weights))
        if context.channels_last:
            model.to(memory_format=torch.contiguous_format)  # export a plain NCHW graph
        device = context.device if half else torch.device("cpu")
        wrapped = with_outputs(model, attention).to(device, torch.float16 if half else torch.float32)
        with staged_export(output_dir, last=(DESCRIPTION_FILE, MODEL_FILE)) as staging:
            export_onnx(wrapped.eval(), staging / MODEL_FILE, input_size, dynamic_spatial, half,
                        attention)
            finish_onnx_file(staging / MODEL_FILE, metadata)
            write_inference_yml(staging / DESCRIPTION_FILE, metadata)
            differences = check_parity(wrapped, staging / MODEL_FILE, input_size, half,
                                       dynamic_spatial, source=str(weights))
    except PromotionError:
        raise  # it says itself which files were replaced
    except Ppq2lError as error:
        raise type(error)(f"{error}; {export_left_as_it_was(output_dir)}") from None
    onnx_path, yml_path = output_dir / MODEL_FILE, output_dir / DESCRIPTION_FILE
    context.logger.info("exported %s and %s", onnx_path, yml_path)
    for shape, difference in differences.items():
        context.logger.info("onnxruntime vs torch, input %s: max abs diff %.3g", shape, difference)
    return {"onnx": str(onnx_path), "inference_yml": str(yml_path), "max_abs_diff": differences}


def with_outputs(model: nn.Module, attention: bool) -> nn.Module:
    """The module to export: scores, or with `attention` (Global.export_attention) scores and
    per-label maps; a model without maps is a ConfigError that names it."""
    if not attention:
        return SigmoidScores(model)
    from ppq2l.explain.maps import ScoresAndMaps, unsupported_reason

    reason = unsupported_reason(model)
    if reason is not None:
        raise ConfigError(f"Global.export_attention=True: {reason}; export it without "
                          f"Global.export_attention")
    return ScoresAndMaps(model)


def export_left_as_it_was(output_dir: Path) -> str:
    """What a failed export says about the target folder (nothing in it was replaced)."""
    if (output_dir / MODEL_FILE).exists():
        return f"nothing was exported: the export already in {output_dir} is unchanged"
    return f"nothing was exported to {output_dir}"
