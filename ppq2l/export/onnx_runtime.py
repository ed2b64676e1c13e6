"""The onnxruntime backend of `ppq2l.predict` for models exported by tools/export_model.py: a
session on the asked-for providers with the CPU as fallback, and the preprocessing, label names
and thresholds read from the model's own metadata. No torch."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from ppq2l.errors import ConfigError
from ppq2l.export.metadata import MODEL_FILE, metadata_from_properties
from ppq2l.predict import Backend
from ppq2l.utils.logger import get_logger

BROKEN_MODEL_ADVICE = "the exported model is broken: re-export it from a good checkpoint"
NO_ATTENTION = ("{path} was exported without per-label maps (its only output is the scores); "
                "re-export it with them: tools/export_model.py -c CONFIG.yaml "
                "-o Global.pretrained_model=CHECKPOINT -o Global.export_attention=True")
CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
# onnxruntime reports failures with its own exception classes, none derived from RuntimeError
ORT_ERRORS = tuple(getattr(ort_state, name) for name in (
    "Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoModel", "NoSuchFile",
    "NotFound", "NotImplemented", "RuntimeException", "EPFail", "EngineError")
    if hasattr(ort_state, name))


def resolve_model_path(model_dir: str | os.PathLike) -> Path:
    """The ONNX file: `model_dir/model.onnx`, or `model_dir` itself when it is a file."""
    path = Path(model_dir).expanduser()
    if path.is_dir() or path.suffix.lower() != ".onnx":
        path = path / MODEL_FILE
    if not path.is_file():
        raise ConfigError(f"inference model not found: {path}; export one with "
                          f"tools/export_model.py and give its folder (Global.inference_model_dir "
                          f"of the deploy config)")
    return path


def preload_cuda_libraries(logger: logging.Logger) -> None:
    """Load the CUDA and cuDNN libraries that onnxruntime-gpu's CUDA provider links against from
    where pip puts them (site-packages/nvidia: torch's CUDA wheels, or onnxruntime-gpu[cuda,cudnn]),
    which the dynamic loader does not search: without this, a process that has not imported torch
    falls back to the CPU ("libcublasLt.so... not found"). onnxruntime >= 1.21 has preload_dlls;
    its messages go to stderr, as stdout carries the records."""
    preload = getattr(onnxruntime, "preload_dlls", None)
    if preload is None:
        return
    with contextlib.redirect_stdout(sys.stderr):
        try:
            preload()
        except (OSError, RuntimeError) as error:
            logger.warning("could not preload the CUDA libraries for onnxruntime: %s", error)


def choose_providers(use_gpu: bool, use_tensorrt: bool, use_fp16: bool,
                     model_dir: Path, logger: logging.Logger) -> list[Any]:
    """Execution providers in preference order; CPU always comes last as the fallback."""
    available = onnxruntime.get_available_providers()
    providers: list[Any] = []
    if use_gpu:
        if use_tensorrt and TENSORRT in available:
            providers.append((TENSORRT, {"trt_fp16_enable": bool(use_fp16),
                                         "trt_engine_cache_enable": True,
                                         "trt_engine_cache_path": str(model_dir / "trt_cache")}))
        elif use_tensorrt:
            logger.warning("use_tensorrt is set but this onnxruntime has no TensorRT provider")
        if CUDA in available:
            preload_cuda_libraries(logger)
            providers.append(CUDA)
        else:
            logger.warning("use_gpu is set but this onnxruntime has no CUDA provider (install "
                           "onnxruntime-gpu); running on the CPU")
    elif use_tensorrt:
        logger.warning("use_tensorrt takes effect with use_gpu; running on the CPU")
    providers.append(CPU)
    return providers


def provider_name(provider: Any) -> str:
    """The name of a provider given as a name or as (name, options)."""
    return provider[0] if isinstance(provider, tuple) else provider


def create_session(path: Path, providers: list[Any], cpu_num_threads: int | None,
                   logger: logging.Logger) -> onnxruntime.InferenceSession:
    """An InferenceSession on `providers`; when a GPU provider cannot start (no device, missing
    libraries) the CPU is used instead and that is logged."""
    options = onnxruntime.SessionOptions()
    if cpu_num_threads:
        options.intra_op_num_threads = int(cpu_num_threads)
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)
    except ORT_ERRORS as error:
        if len(providers) == 1:
            raise ConfigError(f"cannot load {path} with onnxruntime: it is not a valid ONNX model "
                              f"({str(error)[:300]})") from None
        logger.warning("the GPU providers failed to start (%s); retrying on the CPU",
                       str(error)[:300])
        return create_session(path, [CPU], cpu_num_threads, logger)
    wanted = [provider_name(provider) for provider in providers if provider_name(provider) != CPU]
    active = session.get_providers()
    if wanted and not any(name in active for name in wanted):
        logger.warning("asked for %s but onnxruntime runs on %s (no usable GPU?)",
                       ", ".join(wanted), ", ".join(active))
    return session


def plain_runner(session: onnxruntime.InferenceSession, input_name: str, output_name: str,
                 dtype: type) -> Callable[[np.ndarray], np.ndarray]:
    """`run(batch) -> scores` through `session.run`: onnxruntime copies the batch to the device
    and the scores back on every call."""
    def run(batch: np.ndarray) -> np.ndarray:
        feed = {input_name: np.ascontiguousarray(batch, dtype=dtype)}
        return session.run([output_name], feed)[0].astype(np.float32)

    return run


def io_binding_runner(session: onnxruntime.InferenceSession, input_name: str, output_name: str,
                      dtype: type, device: str) -> Callable[[np.ndarray], np.ndarray]:
    """`run(batch) -> scores` with IO binding: the batch is copied once into an OrtValue on
    `device` ("cuda" for the CUDA provider) and the output is bound there too, so onnxruntime
    neither stages the input through its own host buffer nor allocates the output per call on
    the host; only the small [N, C] scores are copied back."""
    binding = session.io_binding()

    def run(batch: np.ndarray) -> np.ndarray:
        value = onnxruntime.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(batch, dtype=dtype),
                                                         device, 0)
        binding.bind_ortvalue_input(input_name, value)
        binding.bind_output(output_name, device)
        session.run_with_iobinding(binding)
        scores = binding.copy_outputs_to_cpu()[0]
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        return scores.astype(np.float32)

    return run


def binding_device(use_io_binding: bool, active: list[str], logger: logging.Logger) -> str | None:
    """The device to bind inputs and outputs on: "cuda" when IO binding is asked for and the
    session runs on the CUDA provider (TensorRT runs on CUDA memory too), else None (plain runs:
    on the CPU binding saves nothing)."""
    if not use_io_binding:
        return None
    if CUDA in active:
        return "cuda"
    if any(name != CPU for name in active):
        logger.info("use_io_binding applies to the CUDA provider; %s runs without it",
                    ", ".join(active))
    return None


def onnx_backend(model_dir: str | os.PathLike, *, use_gpu: bool = False,
                 use_tensorrt: bool = False, use_fp16: bool = False,
                 cpu_num_threads: int | None = None, use_io_binding: bool = True,
                 logger: logging.Logger | None = None) -> Backend:
    """The Backend of an exported model (a folder holding model.onnx, or the file itself).
    `use_io_binding` takes effect only when the session runs on the CUDA provider."""
    logger = logger or get_logger()
    path = resolve_model_path(model_dir)
    providers = choose_providers(use_gpu, use_tensorrt, use_fp16, path.parent, logger)
    session = create_session(path, providers, cpu_num_threads, logger)
    metadata = metadata_from_properties(session.get_modelmeta().custom_metadata_map, str(path))
    if use_fp16 and metadata["precision"] != "fp16" and TENSORRT not in session.get_providers():
        logger.warning("use_fp16 takes effect with TensorRT or a model exported with "
                       "Global.export_fp16=True; this run computes in float32")
    model_input = session.get_inputs()[0]
    input_name, output_name = model_input.name, metadata["output_name"]
    dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
    device = binding_device(use_io_binding, session.get_providers(), logger)
    run = (plain_runner(session, input_name, output_name, dtype) if device is None
           else io_binding_runner(session, input_name, output_name, dtype, device))

    attention_name = metadata.get("attention_output")
    if attention_name not in {output.name for output in session.get_outputs()}:
        attention_name = None

    def run_with_maps(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feed = {input_name: np.ascontiguousarray(batch, dtype=dtype)}
        scores, maps = session.run([output_name, attention_name], feed)
        return scores.astype(np.float32), maps.astype(np.float32)

    return Backend(run=run, preprocess=metadata["preprocess"], postprocess=metadata["postprocess"],
                   label_names=metadata["label_names"],
                   input_size=None if metadata["dynamic_spatial"] else metadata["input_size"],
                   preprocess_where=f"{path} preprocess", postprocess_where=f"{path} postprocess",
                   broken_advice=BROKEN_MODEL_ADVICE, device=", ".join(session.get_providers()),
                   source=str(path), run_with_maps=run_with_maps if attention_name else None,
                   no_maps_reason=NO_ATTENTION.format(path=path))
