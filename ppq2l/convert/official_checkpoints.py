"""Convert an official Query2Label checkpoint into a ppq2l checkpoint.

The official files keep weights under `state_dict` (or `model`), often with the `module.` prefix
of DistributedDataParallel, and may hold numpy scalars such as `best_mAP`. They are read with the
weights-only unpickler, allow-listing exactly those numpy types."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy
import torch

from ppq2l.engine.checkpoint import check_state_dict, extract_state_dict, save_checkpoint
from ppq2l.errors import CheckpointError

FORMATS = ("q2l",)


def _numpy_globals() -> list[Any]:
    """The numpy types a weights-only load needs for numpy scalars and arrays, nothing more."""
    multiarray = getattr(numpy, "_core", None) or numpy.core
    types = [multiarray.multiarray.scalar, numpy.dtype]
    types += [type(numpy.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    return types


def read_official(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint, `module.` prefix removed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    # The weights-only unpickler raises several exception types; all are reported with the file.
    except Exception as error:  # noqa: BLE001 - re-raised as a CheckpointError naming the file
        raise CheckpointError(f"cannot read {path} with the weights-only loader "
                              f"({type(error).__name__}: {str(error)[:300]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, expected a dict")
    weights = extract_state_dict(state, path)
    return {key.removeprefix("module."): value for key, value in weights.items()}


def map_q2l_key(key: str) -> str | None:
    """Our key for an official Query2Label key; None for the fixed position-embedding buffer."""
    if key.startswith("backbone.1."):
        return None
    if key.startswith("backbone.0."):
        return "backbone." + key.removeprefix("backbone.0.")
    return key


def convert_q2l(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official Query2Label weights to ppq2l's Query2Label keys."""
    converted = {}
    for key, value in weights.items():
        target = map_q2l_key(key)
        if target is not None:
            converted[target] = value
    return converted


def convert_checkpoint(source_format: str, input_path: str | os.PathLike, model: torch.nn.Module,
                       output_path: str | os.PathLike) -> Path:
    """Convert `input_path`, verify it loads strictly into `model`, write it atomically."""
    if source_format not in FORMATS:
        raise CheckpointError(f"unknown source format {source_format!r}; valid: {', '.join(FORMATS)}")
    weights = convert_q2l(read_official(input_path))
    check_state_dict(model, weights, source=f"{input_path} converted from {source_format}")
    model.load_state_dict(weights)
    return save_checkpoint({"model": weights, "converted_from": {"file": str(input_path),
                                                                 "format": source_format}},
                           output_path)
