"""Prediction: the one loop that turns images into records for every backend (a checkpoint run
with torch, an exported model run with onnxruntime), and the public `ppq2l.Predictor`.

Inputs are image files, folders (every non-hidden file under them, sorted by path) and numpy
images. A numpy image is RGB, uint8, shape (H, W, 3): what `np.asarray(PIL.Image.open(f)
.convert("RGB"))` gives (OpenCV's `cv2.imread` gives BGR: pass `image[..., ::-1]`); it goes
through the same ops as a file minus the decoding, and its record's file_name is `<array I>`,
I being its position among the inputs. A uint8 (N, H, W, 3) array given alone is N such
images.

This module needs no torch: the torch backend is imported only when a checkpoint is given."""
from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ppq2l.data.image_files import collect_image_files
from ppq2l.data.transforms import build_transforms
from ppq2l.errors import ConfigError, DataError
from ppq2l.export.metadata import MODEL_FILE
from ppq2l.postprocess import build_postprocess
from ppq2l.utils.logger import get_logger
from ppq2l.utils.prefetch import ordered_map

DEFAULT_POSTPROCESS = {"name": "MultiLabelThreshOutput", "threshold": 0.5}
EVAL_OPS_KEY, INFER_OPS_KEY = "DataLoader.Eval.dataset.transform_ops", "Infer.transforms"
NON_FINITE = "the model produced non-finite scores (NaN/Inf) for this image"
INPUT_KEY = "Predictor inputs"


# ----------------------------------------------------------------------- records and exit status
def exit_status(records: Sequence[dict]) -> int:
    """The predictors' rule: 1 when any record is an error record (a file failed), else 0."""
    return 1 if any("error" in record for record in records) else 0


def failure_summary(records: Sequence[dict]) -> str | None:
    """One line naming every input without a prediction, or None when all were predicted."""
    failed = [record["file_name"] for record in records if "error" in record]
    return failure_line(failed, len(records)) if failed else None


def failure_line(failed: Sequence[str], total: int) -> str:
    """The line naming the `failed` inputs among `total` (for a run that keeps no records)."""
    return (f"{len(failed)} of {total} files have no prediction (see their error records): "
            f"{', '.join(failed)}")


# ------------------------------------------------------------------ settings from a training config
def config_postprocess(config: dict, weights: str | os.PathLike | None = None,
                       logger: logging.Logger | None = None) -> dict:
    """Infer.PostProcess of a training config (DEFAULT_POSTPROCESS when it has none) for the
    checkpoint `weights`: a threshold of `auto`, or none, becomes the thresholds.json calibrated
    for it (beside it or in Global.output_dir), else 0.5."""
    from ppq2l.calibration.thresholds_file import AUTO, resolve_auto

    settings = (config.get("Infer") or {}).get("PostProcess") or {**DEFAULT_POSTPROCESS, "threshold": AUTO}
    folders = [(config.get("Global") or {}).get("output_dir") or "."]
    return resolve_auto(copy.deepcopy(settings), weights, folders, logger or get_logger())


def _op_key(entry: Any) -> Any:
    """An op entry with `{Op: null}` and `{Op: {}}` made equal, for comparison."""
    if isinstance(entry, dict) and len(entry) == 1:
        name, keywords = next(iter(entry.items()))
        return name, keywords or {}
    return entry


def first_difference(ops: list, reference: list) -> int | None:
    """The index of the first op where the two lists differ, or None when they are the same."""
    for index in range(max(len(ops), len(reference))):
        mine = _op_key(ops[index]) if index < len(ops) else None
        theirs = _op_key(reference[index]) if index < len(reference) else None
        if mine != theirs:
            return index
    return None


def inference_transforms(config: dict, logger: logging.Logger | None = None) -> tuple[list[dict], str]:
    """The preprocessing of inference and export, and the key it comes from: the Eval ops (deploy
    preprocessing = eval preprocessing), else Infer.transforms. A config that sets both
    differently gets a warning naming the first differing op."""
    eval_ops = (((config.get("DataLoader") or {}).get("Eval") or {}).get("dataset") or {}).get(
        "transform_ops")
    infer_ops = (config.get("Infer") or {}).get("transforms")
    if eval_ops:
        index = first_difference(infer_ops, eval_ops) if infer_ops else None
        if index is not None:
            shown = [ops[index] if index < len(ops) else "no op" for ops in (infer_ops, eval_ops)]
            (logger or get_logger()).warning(
                "%s differs from %s at op %d (%s there, %s in Eval); inference uses the Eval ops, "
                "as evaluation does: remove %s or make it equal", INFER_OPS_KEY, EVAL_OPS_KEY,
                index, shown[0], shown[1], INFER_OPS_KEY)
        return copy.deepcopy(eval_ops), EVAL_OPS_KEY
    if infer_ops:
        return copy.deepcopy(infer_ops), INFER_OPS_KEY
    raise ConfigError(f"the preprocessing is unknown: set {EVAL_OPS_KEY} (or {INFER_OPS_KEY}) in "
                      f"the config")


# ---------------------------------------------------------------------------------- backends
@dataclass
class Backend:
    """What the loop needs from a model: `run(batch [N, 3, H, W] float32) -> scores [N, C]`
    float32 in [0, 1], the preprocessing ops and postprocess settings that go with it, and
    words for messages. `input_size` is the [height, width] the model requires, None for any."""

    run: Callable[[np.ndarray], np.ndarray]
    preprocess: list[dict]
    postprocess: dict
    label_names: list[str] | None = None
    input_size: list[int] | None = None
    preprocess_where: str = "transform_ops"
    postprocess_where: str = "PostProcess"
    broken_advice: str = "the model is broken"
    device: str = "cpu"
    source: str = ""
    # (scores [N, C], per-label maps [N, C, h, w]) for a batch; None: `no_maps_reason` says why
    run_with_maps: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    no_maps_reason: str = "this model gives no per-label maps"


@dataclass
class StageTimer:
    """Accumulated seconds and images per stage, for a benchmark report. With worker threads,
    "preprocess" is the time the loop waited for preprocessed images: what inference did not
    hide."""

    seconds: dict[str, float] = field(default_factory=lambda: {"preprocess": 0.0, "inference": 0.0,
                                                               "postprocess": 0.0})
    images: int = 0

    def per_image_ms(self) -> dict[str, float]:
        """Milliseconds per image of each stage."""
        count = max(self.images, 1)
        return {stage: 1000.0 * total / count for stage, total in self.seconds.items()}


def load_backend(model: str | os.PathLike, *, device: str | None, config: Any,
                 onnx_options: dict[str, Any], logger: logging.Logger) -> Backend:
    """The backend for `model`: an export folder or .onnx file runs with onnxruntime, any other
    file is a checkpoint run with torch (imported only then)."""
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError(f"Predictor model must be a path (a checkpoint, an export folder or a "
                          f"{MODEL_FILE}), got {type(model).__name__}")
    path = Path(model).expanduser()
    if path.is_dir() and not (path / MODEL_FILE).is_file():
        raise ConfigError(f"{path} is a folder without {MODEL_FILE}: give an export folder "
                          f"(tools/export_model.py) or a checkpoint file such as best_model.pth")
    if path.is_dir() or path.suffix.lower() == ".onnx":
        given = [name for name, value in (("device", device), ("config", config)) if value is not None]
        if given:
            raise ConfigError(f"Predictor: {', '.join(given)} applies to a checkpoint, and {path} "
                              f"is an exported model (choose its device with use_gpu=True)")
        from ppq2l.export.onnx_runtime import onnx_backend

        options = {key: value for key, value in onnx_options.items() if value is not None}
        return onnx_backend(path, logger=logger, **options)
    if not path.is_file():
        raise ConfigError(f"model not found: {path}; give a checkpoint written by tools/train.py, "
                          f"an export folder from tools/export_model.py or its {MODEL_FILE}")
    given = [name for name, value in onnx_options.items() if value is not None]
    if given:
        raise ConfigError(f"Predictor: {', '.join(given)} applies to an exported ONNX model, and "
                          f"{path} is a checkpoint (choose its device with device='cuda')")
    from ppq2l.engine.torch_predictor import checkpoint_backend

    return checkpoint_backend(path, device=device, config=config, logger=logger)


# -------------------------------------------------------------------------------------- inputs
def expand_inputs(inputs: Any) -> list[tuple[str, Path | np.ndarray]]:
    """(name, file or image) for every input: folders become their files, a 4-D array its
    images; a missing path or an unknown kind of input is a ConfigError before any work."""
    if isinstance(inputs, np.ndarray) and inputs.ndim == 4:
        inputs = list(inputs)
    elif isinstance(inputs, (str, os.PathLike, np.ndarray)) or not isinstance(inputs, Iterable):
        inputs = [inputs]
    items: list[tuple[str, Path | np.ndarray]] = []
    for position, item in enumerate(inputs):
        if isinstance(item, np.ndarray):
            items.append((f"<array {position}>", item))
        elif isinstance(item, (str, os.PathLike)):
            items += [(str(path), path) for path in
                      collect_image_files(Path(item).expanduser(), f"{INPUT_KEY}[{position}]")]
        else:
            raise ConfigError(f"{INPUT_KEY}[{position}]: expected a file or folder path or an RGB "
                              f"uint8 (H, W, 3) numpy image, got {type(item).__name__}")
    return items


def check_pixels(image: np.ndarray) -> np.ndarray:
    """`image` when it is an RGB uint8 (H, W, 3) array; a DataError saying what it is otherwise."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"a numpy image must be RGB uint8 of shape (H, W, 3), got {image.dtype} "
                        f"{image.shape}")
    return image


class Predictor:
    """Images -> multi-label records with a checkpoint written by tools/train.py (torch; its own
    config gives the model, preprocessing and postprocess) or an export folder / model.onnx
    (onnxruntime; its metadata gives them). See the module docstring for the inputs."""

    def __init__(self, model: str | os.PathLike, *, batch_size: int = 1,
                 threshold: float | Sequence[float] | None = None, device: str | None = None,
                 config: dict | str | os.PathLike | None = None, use_gpu: bool | None = None,
                 use_tensorrt: bool | None = None, use_fp16: bool | None = None,
                 cpu_num_threads: int | None = None, use_io_binding: bool | None = None,
                 num_workers: int = 0, transform_ops: list[dict] | None = None,
                 postprocess: dict | None = None, logger: logging.Logger | None = None) -> None:
        logger = logger or get_logger()
        options = {"use_gpu": use_gpu, "use_tensorrt": use_tensorrt, "use_fp16": use_fp16,
                   "cpu_num_threads": cpu_num_threads, "use_io_binding": use_io_binding}
        backend = load_backend(model, device=device, config=config, onnx_options=options,
                               logger=logger)
        self._setup(backend, batch_size, num_workers, threshold, transform_ops, postprocess,
                    logger, ("transform_ops", "postprocess"))

    @classmethod
    def from_backend(cls, backend: Backend, *, batch_size: int = 1, num_workers: int = 0,
                     threshold: float | Sequence[float] | None = None,
                     transform_ops: list[dict] | None = None, postprocess: dict | None = None,
                     logger: logging.Logger | None = None,
                     option_names: tuple[str, str] = ("transform_ops", "postprocess")) -> Predictor:
        """A predictor on a ready backend; `option_names` are what errors call the two overrides."""
        predictor = cls.__new__(cls)
        predictor._setup(backend, batch_size, num_workers, threshold, transform_ops, postprocess,
                         logger or get_logger(), option_names)
        return predictor

    def _setup(self, backend: Backend, batch_size: int, num_workers: int, threshold: Any,
               transform_ops: list[dict] | None, postprocess: dict | None,
               logger: logging.Logger, option_names: tuple[str, str]) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"num_workers must be an int >= 0 (0: preprocess in the calling "
                              f"thread), got {num_workers!r}")
        self.backend, self.batch_size, self.logger = backend, batch_size, logger
        self.num_workers = num_workers
        # images preprocessed ahead of the model: the next batch plus two per worker thread
        self.prefetch = batch_size + 2 * num_workers
        ops, where = backend.preprocess, backend.preprocess_where
        if transform_ops is not None:
            logger.warning("%s replaces the preprocessing of %s; results may differ from "
                           "evaluation", option_names[0], backend.source)
            ops, where = transform_ops, option_names[0]
        self.transforms = build_transforms(ops, where)
        self._pixel_transforms: Any = None  # built on the first numpy image
        settings, where = dict(backend.postprocess), backend.postprocess_where
        if postprocess is not None:
            logger.warning("%s replaces the postprocess of %s: %s", option_names[1], backend.source,
                           postprocess)
            settings, where = dict(postprocess), option_names[1]
        if threshold is not None:
            settings["threshold"] = threshold
        # names from a label file in the settings win; otherwise the backend's own names are used
        names = None if settings.get("class_id_map_file") else backend.label_names
        extra = {"label_names": names} if names is not None else {}
        try:
            self.postprocess = build_postprocess(settings, where, **extra)
        except DataError as error:
            # the label file: a checkpoint's config names it relative to the folder training ran in
            raise DataError(f"{where} of {backend.source}: {error} (relative paths are read from "
                            f"{Path.cwd()}; give postprocess= with the file's path)") from None
        self.timer = StageTimer()
        self._warned_non_finite = False
        self.map_hook: Callable[..., None] | None = None

    def __repr__(self) -> str:
        return (f"Predictor({self.backend.source!r}, device={self.backend.device!r}, "
                f"batch_size={self.batch_size}, num_workers={self.num_workers})")

    def __call__(self, inputs: Any) -> list[dict]:
        """One record per image, in input order: `{class_ids, scores, label_names, file_name}`, or
        `{file_name, error}` for an unreadable image or one whose scores are NaN/Inf."""
        return list(self.iter_records(expand_inputs(inputs)))

    def explain_with(self, hook: Callable[..., None] | None) -> None:
        """Call `hook(sources, records, scores [n, C], maps [n, C, h, w])` with the predicted
        images of every batch from now on (None: stop); a model without maps: ConfigError."""
        if hook is not None and self.backend.run_with_maps is None:
            raise ConfigError(self.backend.no_maps_reason)
        self.map_hook = hook

    def scores(self, inputs: Any) -> np.ndarray:
        """The model's sigmoid scores [N, C] float32 for the inputs, unthresholded; an unreadable
        input raises its DataError here (there is no record to carry it)."""
        return self._run_inputs(inputs, lambda batch: (self.backend.run(batch),))[0]

    def maps(self, inputs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Scores [N, C] and per-label maps [N, C, h, w] float32 of inputs of one size."""
        if self.backend.run_with_maps is None:
            raise ConfigError(self.backend.no_maps_reason)
        return self._run_inputs(inputs, self.backend.run_with_maps)

    def _run_inputs(self, inputs: Any, run: Callable[[np.ndarray], tuple]) -> tuple:
        arrays = []
        for (name, _), get in ordered_map(lambda item: self.preprocess(item[1]), expand_inputs(inputs),
                                          self.num_workers, self.prefetch):
            try:
                arrays.append(get())
            except (DataError, OSError) as error:
                raise DataError(f"{name}: {error}") from None
        if not arrays:
            raise ConfigError(f"{INPUT_KEY}: no images given")
        batches: list[list[np.ndarray]] = [[]]
        for array in arrays:  # consecutive images of one size, at most batch_size of them
            if batches[-1] and (len(batches[-1]) == self.batch_size
                                or array.shape != batches[-1][0].shape):
                batches.append([])
            batches[-1].append(array)
        outputs = [run(np.stack(batch)) for batch in batches]
        if len({output[-1].shape[2:] for output in outputs}) > 1:
            raise ConfigError("images of different sizes give maps of different sizes; ask for "
                              "the maps of one image size at a time")
        return tuple(np.concatenate(part).astype(np.float32, copy=False) for part in zip(*outputs))

    def preprocess(self, source: str | os.PathLike | np.ndarray) -> np.ndarray:
        """One file or numpy image -> the CHW array the model takes (DataError/OSError when it
        cannot be read; a ConfigError when the preprocessing does not fit the model)."""
        if isinstance(source, np.ndarray):
            array = self._pixels_to_input(check_pixels(source))
        else:
            array = self.transforms(Path(source).read_bytes())
        if not isinstance(array, np.ndarray) or array.ndim != 3 or array.shape[0] != 3:
            raise ConfigError(f"the preprocessing must end with a CHW array (ToCHWImage), got "
                              f"{getattr(array, 'shape', type(array).__name__)}")
        size = self.backend.input_size
        if size is not None and list(array.shape[1:]) != list(size):
            raise ConfigError(f"the preprocessing gives {list(array.shape[1:])} images but the "
                              f"model takes {list(size)} (height, width)")
        return array

    def _pixels_to_input(self, image: np.ndarray) -> np.ndarray:
        """A decoded RGB image through the preprocessing without its DecodeImage: the colour
        order and layout that op would have produced, then the remaining ops."""
        decode = self.transforms.ops[0] if len(self.transforms) else None
        if type(decode).__name__ != "DecodeImage":
            raise ConfigError("numpy images need a preprocessing that starts with DecodeImage "
                              "(the step they skip); pass image files instead")
        if self._pixel_transforms is None:
            self._pixel_transforms = type(self.transforms)(self.transforms.ops[1:])
        if not decode.to_rgb:
            image = image[..., ::-1]
        if decode.channel_first:
            image = image.transpose(2, 0, 1)
        return self._pixel_transforms(np.ascontiguousarray(image))

    def iter_records(self, items: Iterable[tuple[str, Path | np.ndarray]]) -> Iterator[dict]:
        """The loop: records in input order. Batches of `batch_size` are formed from the readable
        inputs across the whole sequence (a bad file only gets its error record), and a batch is
        run early when the next image has another size (size-dependent preprocessing). `items`
        is read lazily; with `num_workers` threads the images are decoded and preprocessed ahead
        of the model, at most `prefetch` of them at a time, so memory stays flat on any input."""
        prepared = ordered_map(lambda item: self.preprocess(item[1]), items, self.num_workers,
                               self.prefetch)
        try:
            yield from self._batched(prepared)
        finally:
            prepared.close()  # an abandoned or failed run cancels the images not started

    def _batched(self, prepared: Iterator[tuple[tuple[str, Any], Callable[[], np.ndarray]]]
                 ) -> Iterator[dict]:
        """The records of `iter_records` from its (item, get preprocessed array) stream."""
        queue: list[dict | None] = []  # records in input order; None until its batch is scored
        pending: list[tuple[int, str, np.ndarray]] = []
        for (name, source), get in prepared:
            began = time.perf_counter()
            try:
                array = get()
            except (DataError, OSError) as error:
                self.logger.warning("%s: %s", name, error)
                queue.append({"file_name": name, "error": str(error)})
            else:
                if pending and array.shape != pending[0][2].shape:
                    self._score(pending, queue)
                    pending = []
                    yield from queue
                    queue = []
                queue.append(None)
                pending.append((len(queue) - 1, name, array, source))
            self.timer.seconds["preprocess"] += time.perf_counter() - began
            if len(pending) == self.batch_size:
                self._score(pending, queue)
                pending = []
            if not pending:
                yield from queue
                queue = []
        if pending:
            self._score(pending, queue)
        yield from queue

    def _score(self, pending: list[tuple[int, str, np.ndarray, Any]], queue: list[dict | None]
               ) -> None:
        """Run one batch and put its records into their places in `queue`. A row with NaN/Inf
        becomes an error record: thresholding it would silently give an empty prediction."""
        began = time.perf_counter()
        batch = np.stack([array for _, _, array, _ in pending])
        scores, maps = (self.backend.run(batch), None) if self.map_hook is None \
            else self.backend.run_with_maps(batch)
        scores = np.asarray(scores, dtype=np.float32)
        inferred = time.perf_counter()
        names = [name for _, name, _, _ in pending]
        finite = np.isfinite(scores).all(axis=1)
        predicted = iter(self.postprocess(scores[finite], [n for n, ok in zip(names, finite) if ok])
                         if finite.any() else [])
        if not finite.all() and not self._warned_non_finite:
            # a broken model fails every image: say it once, the records and summary name the files
            self.logger.warning("the model produced non-finite scores (NaN/Inf), first for %s; %s",
                                names[int(np.argmin(finite))], self.backend.broken_advice)
            self._warned_non_finite = True
        message = f"{NON_FINITE}; {self.backend.broken_advice}"
        for (index, name, _, _), ok in zip(pending, finite):
            queue[index] = next(predicted) if ok else {"file_name": name, "error": message}
        if maps is not None and finite.any():
            self.map_hook([item[3] for item, ok in zip(pending, finite) if ok],
                          [queue[item[0]] for item, ok in zip(pending, finite) if ok],
                          scores[finite], np.asarray(maps, dtype=np.float32)[finite])
        self.timer.seconds["inference"] += inferred - began
        self.timer.seconds["postprocess"] += time.perf_counter() - inferred
        self.timer.images += len(pending)

    def warm_up(self, inputs: Any, rounds: int = 3) -> None:
        """Run one batch of readable inputs a few times (kernel selection, caches) and reset the
        timer; unreadable inputs are skipped here and reported when predicted."""
        arrays = []
        for _, source in expand_inputs(inputs):
            if len(arrays) == self.batch_size:
                break
            try:
                array = self.preprocess(source)
            except (DataError, OSError):
                continue
            if not arrays or array.shape == arrays[0].shape:
                arrays.append(array)
        for _ in range(rounds if arrays else 0):
            self.backend.run(np.stack(arrays))
        self.timer = StageTimer()
