"""The torch backend of `ppq2l.predict`: a checkpoint's model on a device with the config's Eval
preprocessing and Infer.PostProcess. Imported only when a checkpoint is predicted with."""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import numpy as np
import torch

from ppq2l.config import SECTION_DEFAULTS, get_config, validate_config
from ppq2l.engine.checkpoint import load_checkpoint
from ppq2l.engine.components import RunContext, build_model_for_run
from ppq2l.engine.runtime import Precision, resolve_device
from ppq2l.errors import CheckpointError, ConfigError
from ppq2l.explain.maps import explain, unsupported_reason
from ppq2l.predict import Backend, config_postprocess, inference_transforms
from ppq2l.utils.logger import get_logger

BROKEN_CHECKPOINT_ADVICE = ("the checkpoint is broken: use one saved before the training diverged, "
                            "or check Arch and AMP in its config")


def torch_backend(context: RunContext, weights: str | os.PathLike) -> Backend:
    """The Backend of the checkpoint `weights` built from `context.config`, on its device."""
    config = context.config
    ops, where = inference_transforms(config, context.logger)
    model = build_model_for_run(context, weights).eval()

    def to_device(batch: np.ndarray) -> torch.Tensor:
        images = torch.from_numpy(batch).to(context.device)
        if context.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad(), context.precision.test_autocast():
            return torch.sigmoid(model(to_device(batch)).float()).cpu().numpy()

    def run_with_maps(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad(), context.precision.test_autocast():
            logits, maps = explain(model, to_device(batch))
        return torch.sigmoid(logits.float()).cpu().numpy(), maps.float().cpu().numpy()

    reason = unsupported_reason(model)
    return Backend(run=run, preprocess=ops, postprocess=config_postprocess(config),
                   preprocess_where=where, postprocess_where="Infer.PostProcess",
                   broken_advice=BROKEN_CHECKPOINT_ADVICE, device=str(context.device),
                   source=str(weights), run_with_maps=None if reason else run_with_maps,
                   no_maps_reason=reason or "")


def checkpoint_config(path: Path, config: dict | str | os.PathLike | None) -> dict:
    """The config to build the model of checkpoint `path` from: `config` (a dict or a YAML file)
    when given, else the one the trainer stored in the checkpoint under "config"."""
    if isinstance(config, (str, os.PathLike)):
        return get_config(config)
    if config is None:
        config = load_checkpoint(path).get("config")
        if not isinstance(config, dict):
            raise CheckpointError(f"{path} carries no config (checkpoints written by tools/train.py "
                                  f"do): pass config='CONFIG.yaml' to Predictor, or use "
                                  f"tools/infer.py -c CONFIG.yaml -o Global.pretrained_model={path}")
    elif not isinstance(config, dict):
        raise ConfigError(f"Predictor config must be a dict or a YAML path, got "
                          f"{type(config).__name__}")
    config = copy.deepcopy(config)
    # a config kept by an older version may lack keys added since; they get today's defaults
    for section, defaults in SECTION_DEFAULTS.items():
        if isinstance(config.get(section), dict):
            config[section] = {**copy.deepcopy(defaults), **config[section]}
    validate_config(config)
    return config


def checkpoint_backend(path: str | os.PathLike, *, device: str | None = None,
                       config: dict | str | os.PathLike | None = None,
                       logger: logging.Logger | None = None) -> Backend:
    """The Backend of a checkpoint on its own: its config (or `config`) gives the model, the
    preprocessing and the postprocess; `device` defaults to auto (CUDA when present)."""
    path = Path(path).expanduser()
    config = checkpoint_config(path, config)
    torch_device = resolve_device(device or "auto")
    context = RunContext(config, torch_device, Precision(config.get("AMP"), torch_device),
                         Path(config["Global"]["output_dir"]), logger or get_logger())
    return torch_backend(context, path)
