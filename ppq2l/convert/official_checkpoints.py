"""Convert official Query2Label, ML-Decoder and ASL checkpoints into ppq2l checkpoints.

The official files keep weights under `state_dict` or `model` (or are a bare state dict), often
with the `module.` prefix of DistributedDataParallel, and may hold numpy scalars such as
`best_mAP`. They are read by the one weight-file reader (ppq2l/engine/checkpoint.py), which
unwraps them, with the numpy scalar types allow-listed and nothing more.
TResNet backbones in the official InPlaceABN layout are renamed to timm's layout first
(ppq2l/convert/tresnet_layout.py); then each format renames its keys onto ppq2l's model:

- q2l: the backbone `backbone.0.*` -> `backbone.body.*`: torchvision ResNets and TResNets sit in
  an IntermediateLayerGetter there (`backbone.0.body.*`, its `body.` taken off), Swin and CvT are
  the model itself (`backbone.0.layers.*`, `backbone.0.stage0.*`). A Swin in Microsoft's layout
  is moved to timm's first (ppq2l/convert/swin_layout.py). The position-embedding buffer
  `backbone.1.*` is dropped (ppq2l computes it).
- ml_decoder: the head, which the official code puts where the backbone had its classifier
  (`head` on TResNet, `fc` on timm models with a global pool and `fc`, such as ResNet), ->
  `head.*`; every other key is the timm backbone -> `backbone.body.*`.
- asl: the TResNet `body.*` -> `backbone.body.body.*`; the classifier `head.fc.*` -> `fc.*` of the
  pooled classifier. Other keys are kept as they are, so the check lists them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from ppq2l.convert.swin_layout import microsoft_swin_to_timm
from ppq2l.convert.tresnet_layout import official_tresnet_to_timm
from ppq2l.engine.checkpoint import load_weights, numpy_scalar_globals, read_state_dict, save_checkpoint
from ppq2l.errors import CheckpointError

# Where the official ML-Decoder code attaches its head: TResNet's `head`, or the `fc` of timm
# models that have `global_pool` and `fc` (ResNet).
ML_DECODER_HEAD_PREFIXES = ("head.", "fc.")
OFFICIAL_ADVICE = ("the converter reads official checkpoints holding tensors and numpy scalars; "
                   "load this one where it was made and save its state dict on its own")


def read_official(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint, unwrapped and without the `module.` prefix."""
    return read_state_dict(path, "official checkpoint", numpy_scalar_globals(), OFFICIAL_ADVICE)


def map_q2l_key(key: str) -> str | None:
    """Our key for an official Query2Label key; None for the fixed position-embedding buffer."""
    if key.startswith("backbone.1."):
        return None
    if key.startswith("backbone.0.body."):  # IntermediateLayerGetter (ResNet, TResNet)
        return "backbone.body." + key.removeprefix("backbone.0.body.")
    if key.startswith("backbone.0."):  # the backbone model itself (Swin, CvT)
        return "backbone.body." + key.removeprefix("backbone.0.")
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
    return microsoft_swin_to_timm(converted)


def save_converted(weights: dict[str, torch.Tensor], model: torch.nn.Module, source_format: str,
                   input_path: str | os.PathLike, output_path: str | os.PathLike) -> Path:
    """Check that converted `weights` load strictly into `model`, then write them atomically."""
    load_weights(model, weights, source=f"{input_path} converted from {source_format}")
    return save_checkpoint({"model": weights, "converted_from": {"file": str(input_path),
                                                                 "format": source_format}},
                           output_path)


def convert_checkpoint(source_format: str, input_path: str | os.PathLike, model: torch.nn.Module,
                       output_path: str | os.PathLike) -> Path:
    """Convert `input_path`, verify it loads strictly into `model`, write it atomically."""
    weights = convert_official(source_format, input_path)
    return save_converted(weights, model, source_format, input_path, output_path)
