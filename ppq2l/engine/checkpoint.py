"""Checkpoints: atomic writes, safe reads (`weights_only=True`), and loading weights into a model
with a report of every key that does not fit."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ppq2l.errors import CheckpointError
from ppq2l.utils.atomic_write import atomic_output

MODEL_KEYS = ("model", "state_dict")  # where a checkpoint may keep the weights
_SHOWN = 10  # how many offending keys an error lists before summarising


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


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint onto the CPU with `weights_only=True`; any failure names the file."""
    path = Path(path).expanduser()
    fallback = previous_path(path)
    hint = f"; the checkpoint before it is {fallback}" if fallback.is_file() else ""
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give the path of a .pth file in it")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}{hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # The weights-only unpickler reports a damaged file with many exception types (KeyError,
    # IndexError, UnpicklingError, RuntimeError, ...), so every one of them is wrapped here.
    except Exception as error:  # noqa: BLE001 - re-raised as a CheckpointError naming the file
        raise CheckpointError(f"cannot read checkpoint {path}: {describe_load_error(error)}{hint}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, expected a dict of weights")
    return state


def describe_load_error(error: Exception) -> str:
    """Why `torch.load(weights_only=True)` refused a file, in our words: torch's own message
    suggests `weights_only=False`, which would run code from the file, so it is not repeated."""
    text = str(error)
    refused = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\s+was not an allowed global|"
                        r"\.?\s*Please use|\n\nCheck|$)", text, re.S)
    if refused:
        detail = " ".join(refused.group(1).split()) or "an unsupported pickle instruction"
        return (f"it holds Python objects that a weights-only load refuses ({detail}). ppq2l reads "
                f"checkpoints without running code from them: save the weights as a dict of "
                f"tensors, or convert an official checkpoint with tools/convert_checkpoint.py")
    return (f"it is truncated, corrupt or not a torch file ({type(error).__name__}: "
            f"{' '.join(text.split())[:300]})")


def extract_state_dict(state: Mapping[str, Any], path: str | os.PathLike = "") -> dict[str, torch.Tensor]:
    """The weights in a checkpoint dict: under `model`/`state_dict`, or the dict itself."""
    for key in MODEL_KEYS:
        if isinstance(state.get(key), Mapping):
            state = state[key]
            break
    weights = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    if not weights:
        raise CheckpointError(f"{path or 'checkpoint'} contains no tensors "
                              f"(top-level keys: {', '.join(map(str, list(state)[:_SHOWN]))})")
    return weights


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > _SHOWN else shown


def check_state_dict(model: nn.Module, weights: Mapping[str, torch.Tensor],
                     source: str = "checkpoint") -> None:
    """Raise a CheckpointError naming missing, unexpected and wrongly shaped keys."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    mismatched = [f"{key} {tuple(weights[key].shape)} vs model {tuple(expected[key].shape)}"
                  for key in expected if key in weights and weights[key].shape != expected[key].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_listed(mismatched)}")
    if problems:
        raise CheckpointError(f"{source} does not fit the model built from the config (check "
                              f"Arch, e.g. class_num and backbone):\n  " + "\n  ".join(problems))


def load_model_weights(model: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Load the weights in `path` into `model` strictly; returns the whole checkpoint dict."""
    state = load_checkpoint(path)
    weights = extract_state_dict(state, path)
    check_state_dict(model, weights, source=str(path))
    model.load_state_dict(weights)
    return state


def first_nonfinite_tensor(weights: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, else None."""
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None
