"""An onnxruntime predictor for models exported by tools/export_model.py. It reads the
preprocessing, label names and thresholds from the model's own metadata and reuses the package's
numpy transforms and postprocess, so nothing here needs torch (the deploy predictor imports it)."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from ppq2l.data.transforms import build_transforms
from ppq2l.errors import ConfigError, DataError
from ppq2l.export.metadata import metadata_from_properties
from ppq2l.postprocess import build_postprocess

MODEL_FILE = "model.onnx"
BROKEN_MODEL_ADVICE = "the exported model is broken: re-export it from a good checkpoint"
NON_FINITE_MESSAGE = ("the model produced non-finite scores (NaN/Inf) for this image; "
                      + BROKEN_MODEL_ADVICE)
CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
# onnxruntime reports failures with its own exception classes, none derived from RuntimeError
ORT_ERRORS = tuple(getattr(ort_state, name) for name in (
    "Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoModel", "NoSuchFile",
    "NotFound", "NotImplemented", "RuntimeException", "EPFail", "EngineError")
    if hasattr(ort_state, name))


def resolve_model_path(model_dir: str | os.PathLike) -> Path:
    """The ONNX file: `model_dir/model.onnx`, or `model_dir` itself when it is a file."""
    path = Path(model_dir)
    if path.is_dir() or path.suffix.lower() != ".onnx":
        path = path / MODEL_FILE
    if not path.is_file():
        raise ConfigError(f"inference model not found: {path}; export one with "
                          f"tools/export_model.py and set Global.inference_model_dir to its folder")
    return path


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
            providers.append(CUDA)
        else:
            logger.warning("use_gpu is set but this onnxruntime has no CUDA provider (install "
                           "onnxruntime-gpu); running on the CPU")
    providers.append(CPU)
    return providers


def provider_name(provider: Any) -> str:
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


@dataclass
class StageTimer:
    """Accumulated seconds and images per stage, for the benchmark report."""

    seconds: dict[str, float] = field(default_factory=lambda: {"preprocess": 0.0, "inference": 0.0,
                                                               "postprocess": 0.0})
    images: int = 0

    def per_image_ms(self) -> dict[str, float]:
        """Milliseconds per image of each stage."""
        count = max(self.images, 1)
        return {stage: 1000.0 * total / count for stage, total in self.seconds.items()}


class OnnxMultiLabelPredictor:
    """Files -> records with an exported model: preprocessing and postprocessing come from its
    metadata unless `transform_ops` / `postprocess` override them."""

    def __init__(self, model_dir: str | os.PathLike, use_gpu: bool = False,
                 use_tensorrt: bool = False, use_fp16: bool = False,
                 cpu_num_threads: int | None = None, transform_ops: list[dict] | None = None,
                 postprocess: dict | None = None, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("ppq2l.deploy")
        self.model_path = resolve_model_path(model_dir)
        providers = choose_providers(use_gpu, use_tensorrt, use_fp16, self.model_path.parent,
                                     self.logger)
        self.session = create_session(self.model_path, providers, cpu_num_threads, self.logger)
        self.metadata = metadata_from_properties(
            self.session.get_modelmeta().custom_metadata_map, str(self.model_path))
        if use_fp16 and self.metadata["precision"] != "fp16" and TENSORRT not in self.session.get_providers():
            self.logger.warning("use_fp16 takes effect with TensorRT or a model exported with "
                                "Global.export_fp16=True; this run computes in float32")
        ops = self.metadata["preprocess"]
        if transform_ops is not None:
            self.logger.warning("preprocessing from the config replaces the one the model was "
                                "exported with; results may differ from training")
            ops = transform_ops
        self.transforms = build_transforms(ops, "PreProcess.transform_ops")
        settings = dict(self.metadata["postprocess"])
        if postprocess is not None:
            self.logger.warning("PostProcess from the config replaces the model's: %s", postprocess)
            settings = dict(postprocess)
        # names from a label file in the override win; otherwise the model's own names are used
        names = None if settings.get("class_id_map_file") else self.metadata["label_names"]
        self.postprocess = build_postprocess(settings, "PostProcess", label_names=names)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
        self.output_name = self.metadata["output_name"]
        self.timer = StageTimer()
        self.warned_non_finite = False

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses."""
        return self.session.get_providers()

    def preprocess(self, path: str | os.PathLike) -> np.ndarray:
        """One file -> the CHW float32 array the model takes (DataError/OSError when unreadable)."""
        array = self.transforms(Path(path).read_bytes())
        if not isinstance(array, np.ndarray) or array.ndim != 3:
            raise ConfigError(f"the preprocessing must end with a CHW array (ToCHWImage), got "
                              f"{getattr(array, 'shape', type(array).__name__)}")
        if not self.metadata["dynamic_spatial"] and list(array.shape[1:]) != self.metadata["input_size"]:
            raise ConfigError(f"the preprocessing gives {list(array.shape[1:])} images but the model "
                              f"was exported for {self.metadata['input_size']} (height, width)")
        return array

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Scores [B, C] (float32) for a preprocessed batch [B, 3, H, W]."""
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=self.input_dtype)}
        return self.session.run([self.output_name], feed)[0].astype(np.float32)

    def postprocess_scores(self, scores: np.ndarray, names: Sequence[str]) -> list[dict]:
        """One record per row of `scores`; a row with NaN/Inf gets an error record instead, since
        thresholding it would silently give an empty prediction."""
        finite = np.isfinite(scores).all(axis=1)
        predicted = iter(self.postprocess(scores[finite], [n for n, ok in zip(names, finite) if ok])
                         if finite.any() else [])
        if not finite.all() and not self.warned_non_finite:
            # a broken model fails every image: say it once, the records and summary name the files
            self.logger.warning("the model produced non-finite scores (NaN/Inf), first for %s; %s",
                                names[int(np.argmin(finite))], BROKEN_MODEL_ADVICE)
            self.warned_non_finite = True
        return [next(predicted) if ok else {"file_name": name, "error": NON_FINITE_MESSAGE}
                for name, ok in zip(names, finite)]

    def predict_files(self, files: Sequence[str | os.PathLike], batch_size: int = 1) -> list[dict]:
        """One record per file, in order: the postprocess output, or `{file_name, error}` for a
        file that cannot be read or decoded or whose scores are NaN/Inf."""
        records: list[dict] = []
        for start in range(0, len(files), batch_size):
            batch = files[start:start + batch_size]
            slots: list[dict | None] = []
            arrays, names = [], []
            began = time.perf_counter()
            for path in batch:
                try:
                    arrays.append(self.preprocess(path))
                    names.append(str(path))
                    slots.append(None)
                except (DataError, OSError) as error:
                    slots.append({"file_name": str(path), "error": str(error)})
                    self.logger.warning("%s: %s", path, error)
            preprocessed = time.perf_counter()
            if arrays:
                scores = self.infer(np.stack(arrays))
                inferred = time.perf_counter()
                predicted = iter(self.postprocess_scores(scores, names))
                slots = [slot if slot is not None else next(predicted) for slot in slots]
                finished = time.perf_counter()
                self.timer.seconds["inference"] += inferred - preprocessed
                self.timer.seconds["postprocess"] += finished - inferred
                self.timer.images += len(arrays)
            self.timer.seconds["preprocess"] += preprocessed - began
            records.extend(slots)
        return records

    def warm_up(self, files: Sequence[str | os.PathLike], batch_size: int, rounds: int = 3) -> None:
        """Run inference on one batch of readable files a few times (kernel selection, caches)
        before timing; unreadable files are skipped here and reported by predict_files."""
        arrays = []
        for path in files:
            if len(arrays) == batch_size:
                break
            try:
                arrays.append(self.preprocess(path))
            except (DataError, OSError):
                continue
        for _ in range(rounds if arrays else 0):
            self.infer(np.stack(arrays))
        self.timer = StageTimer()
