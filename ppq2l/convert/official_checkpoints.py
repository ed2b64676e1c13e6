"""Convert official Query2Label, ML-Decoder and ASL checkpoints into ppq2l checkpoints.

The official files keep weights under `state_dict` or `model` (or are a bare state dict), often
with the `module.` prefix of DistributedDataParallel, and may hold numpy scalars such as
`best_mAP`. They are read with the weights-only unpickler, allow-listing exactly those numpy types.
TResNet backbones in the official InPlaceABN layout are renamed to timm's layout first
(ppq2l/convert/tresnet_layout.py); then each format renames its keys onto ppq2l's model:

- q2l: `backbone.0.<body>` -> `backbone.<body>`; the position-embedding buffer `backbone.1.*` is
  dropped (ppq2l computes it).
- ml_decoder: the head, which the official code puts where the backbone had its classifier
  (`head` on TResNet, `fc` on timm models with a global pool and `fc`, such as ResNet), ->
  `head.*`; every other key is the timm backbone -> `backbone.body.*`.
- asl: the TResNet `body.*` -> `backbone.body.body.*`; the classifier `head.fc.*` -> `fc.*` of the
  pooled classifier. Other keys are kept as they are, so the check lists them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy
import torch

from ppq2l.convert.tresnet_layout import official_tresnet_to_timm
from ppq2l.engine.checkpoint import (check_state_dict, describe_load_error, extract_state_dict,
                                     save_checkpoint)
from ppq2l.errors import CheckpointError

# Where the official ML-Decoder code attaches its head: TResNet's `head`, or the `fc` of timm
# models that have `global_pool` and `fc` (ResNet).
ML_DECODER_HEAD_PREFIXES = ("head.", "fc.")


def _numpy_globals() -> list[Any]:
    """The numpy types a weights-only load needs for numpy scalars and arrays, nothing more."""
    multiarray = getattr(numpy, "_core", None) or numpy.core
    types = [multiarray.multiarray.scalar, numpy.dtype]
    types += [type(numpy.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    return types


def read_official(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint, `module.` prefix removed."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file; give the official "
                              f"checkpoint file itself (e.g. {path / 'checkpoint.pth'})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    # The weights-only unpickler raises several exception types; all are reported with the file.
    except Exception as error:  # noqa: BLE001 - re-raised as a CheckpointError naming the file
        raise CheckpointError(f"cannot read {path}: {describe_load_error(error)}") from None
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


def map_ml_decoder_key(key: str) -> str:
    """Our MLDecoder key for an official ML-Decoder key (backbone already in timm's layout)."""
    for prefix in ML_DECODER_HEAD_PREFIXES:
        if key.startswith(prefix):
            return "head." + key.removeprefix(prefix)
    return "backbone.body." + key


def map_asl_key(key: str) -> str:
    """Our PooledClassifier key for an official ASL key (TResNet already in timm's layout)."""
    if key.startswith("head.fc."):
        return "fc." + key.removeprefix("head.fc.")
    if key.startswith("body."):
        return "backbone.body." + key
    return key


KEY_MAPS: dict[str, Callable[[str], str | None]] = {
    "q2l": map_q2l_key, "ml_decoder": map_ml_decoder_key, "asl": map_asl_key}
FORMATS = tuple(KEY_MAPS)


def check_format(source_format: str) -> None:
    """Raise a CheckpointError listing the valid formats when `source_format` is not one."""
    if source_format not in KEY_MAPS:
        raise CheckpointError(f"unknown source format {source_format!r}; "
                              f"valid: {', '.join(FORMATS)}")


def convert_official(source_format: str, input_path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the official checkpoint `input_path` and rename its weights to ppq2l's keys."""
    check_format(source_format)
    weights = official_tresnet_to_timm(read_official(input_path))
    key_map = KEY_MAPS[source_format]
    converted = {}
    for key, value in weights.items():
        target = key_map(key)
        if target is not None:
            converted[target] = value
    return converted


def save_converted(weights: dict[str, torch.Tensor], model: torch.nn.Module, source_format: str,
                   input_path: str | os.PathLike, output_path: str | os.PathLike) -> Path:
    """Check that converted `weights` load strictly into `model`, then write them atomically."""
    check_state_dict(model, weights, source=f"{input_path} converted from {source_format}")
    model.load_state_dict(weights)
    return save_checkpoint({"model": weights, "converted_from": {"file": str(input_path),
                                                                 "format": source_format}},
                           output_path)


def convert_checkpoint(source_format: str, input_path: str | os.PathLike, model: torch.nn.Module,
                       output_path: str | os.PathLike) -> Path:
    """Convert `input_path`, verify it loads strictly into `model`, write it atomically."""
    weights = convert_official(source_format, input_path)
    return save_converted(weights, model, source_format, input_path, output_path)
