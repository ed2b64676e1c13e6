"""Weight files, in one place: the one reader (weights-only unpickling; a folder, a missing or a
damaged file said as such), the unwrapping of the weights inside a file, the one report of keys
that do not fit a model, and the one atomic writer. Every reader of weights in ppq2l comes here:
checkpoints, backbone `pretrained: <path>` files, official checkpoints, word-vector files."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy
import torch
from torch import nn

from ppq2l.errors import CheckpointError
from ppq2l.utils.atomic_write import atomic_output

# Containers a file may keep its weights under, tried in this order and unwrapped while nested:
# ppq2l and most trainers write `model`, older code `state_dict`, ModelEMA and DeepSpeed `module`.
MODEL_KEYS = ("model", "state_dict", "module")
NESTING_LIMIT = 8  # containers unwrapped at most; a pickle can nest a dict in itself
# Prefixes a wrapper puts on every key: DataParallel / DistributedDataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
KEYS_SHOWN = 10  # how many keys of each kind a report lists; the counts give the totals
WEIGHT_SUFFIXES = (".pth", ".pt", ".pkl", ".ckpt", ".bin", ".tar")
FROM_CONFIG = "the model built from the config (check Arch, e.g. class_num and backbone)"
CHECKPOINT_ADVICE = ("save the weights as a dict of tensors, or convert an official checkpoint "
                     "with tools/convert_checkpoint.py")

Filter = Callable[[str], bool]


def previous_path(path: str | os.PathLike) -> Path:
    """Where `save_checkpoint(..., keep_previous=True)` keeps the file it replaces
    (`latest.pth` -> `latest.prev.pth`)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike,
                    keep_previous: bool = False) -> Path:
    """Write `state` to `path` through a temporary file and a rename, so a crash mid-write leaves
    the previous file intact. With `keep_previous` the file being replaced moves to
    `previous_path(path)` first, a fallback should `path` later be damaged (e.g. a truncated copy)."""
    path = Path(path)
    with atomic_output(path, keep_previous=previous_path(path) if keep_previous else None) as handle:
        torch.save(dict(state), handle)
    return path


# ----------------------------------------------------------------------------- reading a file
def read_weight_file(path: str | os.PathLike, what: str = "checkpoint",
                     allowed_globals: Iterable[Any] = (), advice: str = CHECKPOINT_ADVICE,
                     hint: str = "") -> Any:
    """The object in weight file `path`, read onto the CPU by the weights-only unpickler (which
    also accepts `allowed_globals`); any failure is a CheckpointError naming the `what` and file."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a folder, not a checkpoint file; give the path of "
                              f"a file in it ({_weight_files_in(path)})")
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}{hint}")
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    # The weights-only unpickler reports a damaged file with many exception types (KeyError,
    # IndexError, UnpicklingError, RuntimeError, ...), so every one of them is wrapped here.
    except Exception as error:  # noqa: BLE001 - re-raised as a CheckpointError naming the file
        raise CheckpointError(f"cannot read {what} {path}: "
                              f"{describe_load_error(error, advice)}{hint}") from None


def _weight_files_in(folder: Path) -> str:
    """Which weight files `folder` holds, for the error that says it is a folder."""
    try:
        names = sorted(entry.name for entry in folder.iterdir()
                       if entry.suffix in WEIGHT_SUFFIXES and entry.is_file())
    except OSError:  # unreadable folder: the error still says it is one
        return "its content cannot be listed"
    if not names:
        return f"it holds no {'/'.join(WEIGHT_SUFFIXES)} file"
    more = f", ... ({len(names)} in all)" if len(names) > KEYS_SHOWN else ""
    return f"it holds {', '.join(names[:KEYS_SHOWN])}{more}"


def describe_load_error(error: Exception, advice: str = CHECKPOINT_ADVICE) -> str:
    """Why `torch.load(weights_only=True)` refused a file, in our words: torch's own message
    suggests `weights_only=False`, which would run code from the file, so it is not repeated."""
    text = str(error)
    if "WeightsUnpickler error" in text or "Weights only load failed" in text:
        return (f"it holds Python objects that a weights-only load refuses "
                f"({_refusal(text) or 'an unsupported pickle instruction'}). ppq2l reads weight "
                f"files without running code from them: {advice}")
    return (f"it is truncated, corrupt or not a torch file ({type(error).__name__}: "
            f"{' '.join(text.split())[:300]})")


def _refusal(text: str) -> str:
    """What the weights-only unpickler refused (`GLOBAL posix.system`), without torch's advice."""
    found = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\n\nCheck|$)", text, re.S)
    if found:
        body = found.group(1)
    else:  # torch states a blocked module in the paragraph after its advice
        paragraphs = [part for part in re.split(r"\n\s*\n", text) if part.strip() and not
                      part.lstrip().startswith(("Weights only load failed", "Check the doc"))]
        body = paragraphs[0] if paragraphs else ""
    body = re.split(r"\s+was not an allowed global|\.?\s*Please use|\s+whose module", body)[0]
    body = body.replace(" or types allowlisted via `add_safe_globals`", "")
    return " ".join(body.split()).rstrip(".")


def numpy_scalar_globals() -> list[Any]:
    """What a weights-only load needs for numpy scalars (official files keep `best_mAP` as one):
    the scalar constructor and the dtypes of the common scalar types; no arrays, no functions."""
    multiarray = getattr(numpy, "_core", None) or numpy.core
    scalar = multiarray.multiarray.scalar
    dtypes = [type(numpy.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    # The unpickler matches globals by name, and numpy 2 renamed numpy.core to numpy._core: files
    # pickled under either numpy name the constructor their way.
    names = [(scalar, f"{package}.multiarray.scalar") for package in ("numpy.core", "numpy._core")]
    return [*names, numpy.dtype, *dtypes]


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint",
                    allowed_globals: Iterable[Any] = (),
                    advice: str = CHECKPOINT_ADVICE) -> dict[str, Any]:
    """The dict in weight file `path` (see `read_weight_file`); a failure names the file and, when
    there is one, the `latest.prev.pth` kept beside it."""
    path = Path(path).expanduser()
    fallback = previous_path(path)
    hint = f"; the checkpoint before it is {fallback}" if fallback.is_file() else ""
    state = read_weight_file(path, what, allowed_globals, advice, hint)
    if not isinstance(state, dict):
        raise CheckpointError(f"{what} {path} holds a {type(state).__name__}, expected a dict of "
                              f"weights")
    return state


# ----------------------------------------------------------------------------- the weights in it
def extract_state_dict(state: Mapping[str, Any], path: str | os.PathLike = "",
                       what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint dict: under `model` / `state_dict` / `module` (nested
    containers unwrapped), or the dict itself; entries that are not tensors (an epoch) left out."""
    for _ in range(NESTING_LIMIT):
        inner = next((state[key] for key in MODEL_KEYS if isinstance(state.get(key), Mapping)), None)
        if inner is None:
            break
        state = inner
    weights = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    if not weights:
        raise CheckpointError(f"{what} {path}".strip() + f" contains no tensors (its keys: "
                              f"{_listed([str(key) for key in state])}); expected a state dict "
                              f"of tensors, bare or under {' / '.join(MODEL_KEYS)}")
    return weights


def strip_wrapper_prefixes(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`weights` without the `module.` / `_orig_mod.` prefixes that DistributedDataParallel and
    torch.compile put on every key (in any nesting); a prefix only some keys have is kept."""
    weights = dict(weights)
    stripped = True
    while stripped and weights:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(isinstance(key, str) and key.startswith(prefix) for key in weights):
                weights = {key[len(prefix):]: value for key, value in weights.items()}
                stripped = True
    return weights


def read_state_dict(path: str | os.PathLike, what: str = "checkpoint",
                    allowed_globals: Iterable[Any] = (),
                    advice: str = CHECKPOINT_ADVICE) -> dict[str, torch.Tensor]:
    """The weights of any weight file: read safely, unwrapped, wrapper prefixes removed."""
    state = load_checkpoint(path, what, allowed_globals, advice)
    return strip_wrapper_prefixes(extract_state_dict(state, path, what))


# ----------------------------------------------------------------------------- fitting a model
def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:KEYS_SHOWN])
    return shown + (", ..." if len(keys) > KEYS_SHOWN else "")


def mismatch_report(expected: Mapping[str, torch.Tensor], weights: Mapping[str, Any]) -> str:
    """'' when `weights` fit `expected` (a model's state dict) in names and shapes, else
    `missing (n): ...; unexpected (n): ...; shape mismatch (n): key (file) vs model (model)`."""
    missing = [key for key in expected if key not in weights]
    unexpected = [str(key) for key in weights if key not in expected]
    mismatched = [f"{key} {tuple(weights[key].shape)} vs model {tuple(expected[key].shape)}"
                  for key in expected
                  if key in weights and tuple(weights[key].shape) != tuple(expected[key].shape)]
    return "; ".join(f"{label} ({len(keys)}): {_listed(keys)}" for label, keys in
                     (("missing", missing), ("unexpected", unexpected),
                      ("shape mismatch", mismatched)) if keys)


def check_state_dict(model: nn.Module, weights: Mapping[str, torch.Tensor],
                     source: str = "checkpoint", target: str = FROM_CONFIG) -> None:
    """Raise a CheckpointError with the mismatch report when `weights` do not fit `model`."""
    report = mismatch_report(model.state_dict(), weights)
    if report:
        raise CheckpointError(f"{source} does not fit {target}: {report}")


def is_batchnorm_counter(key: str) -> bool:
    """BatchNorm's step counter: not a weight; frozen-BN models neither have nor need it."""
    return key.endswith("num_batches_tracked")


def load_weights(model: nn.Module, weights: Mapping[str, torch.Tensor], source: str,
                 target: str = FROM_CONFIG, foreign: Filter | None = None,
                 optional: Filter | None = None) -> None:
    """Load `weights` into `model` strictly, but for two exceptions the caller names: file keys the
    model lacks for which `foreign(key)` holds are dropped (a classifier a headless backbone has
    no use for); model keys the file lacks for which `optional(key)` holds keep their value."""
    expected = model.state_dict()
    fitted = {key: value for key, value in weights.items()
              if key in expected or foreign is None or not foreign(key)}
    if optional is not None:
        fitted.update({key: value for key, value in expected.items()
                       if key not in fitted and optional(key)})
    report = mismatch_report(expected, fitted)
    if report:
        raise CheckpointError(f"{source} does not fit {target}: {report}")
    model.load_state_dict(fitted)


def load_model_weights(model: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Load the weights in `path` into `model` strictly; returns the whole checkpoint dict."""
    state = load_checkpoint(path)
    load_weights(model, strip_wrapper_prefixes(extract_state_dict(state, path)), source=str(path))
    return state


def first_nonfinite_tensor(weights: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, else None."""
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None
