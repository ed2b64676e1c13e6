"""What every run sets up from the config before it trains, evaluates or exports: the output
folder and log, seeding, the device and precision, and the model with its weights."""
from __future__ import annotations

import copy
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ppq2l.arch import build_model
from ppq2l.config import config_to_yaml
from ppq2l.engine.checkpoint import load_model_weights
from ppq2l.engine.distributed import get_world_size, init_distributed, is_main_process
from ppq2l.engine.run_folder import check_output_dir
from ppq2l.engine.runtime import Precision, configure_threads, resolve_device, seed_everything
from ppq2l.errors import ConfigError
from ppq2l.utils.atomic_write import prepare_output_dir, write_text_atomic
from ppq2l.utils.logger import get_logger, log_to_file


@dataclass
class RunContext:
    """The resolved surroundings of one run."""

    config: dict
    device: torch.device
    precision: Precision
    output_dir: Path
    logger: logging.Logger

    @property
    def channels_last(self) -> bool:
        """Whether models and inputs use the channels-last memory layout."""
        return bool(self.config["Global"]["channels_last"])

    @property
    def class_num(self) -> int:
        """Number of classes the model predicts."""
        return int(self.config["Arch"]["class_num"])


def start_run(config: dict, log_name: str, training: bool = False) -> RunContext:
    """Check and create the output folder, open the log file and log the config, seed and pick a
    device. A training run first checks the folder's rule (one run per folder, see run_folder)."""
    settings = config["Global"]
    device = init_distributed(resolve_device(str(settings["device"])))
    logger = get_logger()
    if is_main_process():
        output_dir = prepare_output_dir(settings["output_dir"], "Global.output_dir")
    else:
        output_dir = Path(settings["output_dir"]).expanduser()
    if training:  # every rank checks, so that a refusal stops them all
        check_output_dir(output_dir, settings["checkpoints"], bool(settings["overwrite"]), logger)
    if is_main_process():
        logger = log_to_file(output_dir / log_name)
        logger.info("config:\n%s", config_to_yaml(config).rstrip())
    else:  # the other ranks only report warnings and errors, and write no files
        logger.setLevel(logging.WARNING)
    configure_threads(settings["num_threads"])
    seed_everything(int(settings["seed"]), bool(settings["deterministic"]))
    precision = Precision(config.get("AMP"), device)
    logger.info("device %s x %d process(es), precision %s, output %s", device, get_world_size(),
                precision.describe(), output_dir)
    return RunContext(config, device, precision, output_dir, logger)


def require_section(config: dict, dotted: str) -> Any:
    """The config value at `dotted` (e.g. `DataLoader.Eval`), or a ConfigError saying it is needed."""
    node: Any = config
    for depth, part in enumerate(dotted.split(".")):
        if not isinstance(node, dict) or node.get(part) is None:
            have = ", ".join(node) if isinstance(node, dict) else "nothing"
            where = ".".join(dotted.split(".")[:depth]) or "the config"
            raise ConfigError(f"this command needs {dotted} in the config; {where} has: {have}")
        node = node[part]
    return node


def build_model_for_run(context: RunContext, weights: str | os.PathLike | None = None,
                        replaced_weights: bool = False) -> nn.Module:
    """Build the Arch model on the run's device, loading `weights` (a checkpoint) when given.
    When the checkpoint (or, with `replaced_weights`, a resumed state) supplies every weight, the
    backbone's ImageNet weights are not fetched: they would be overwritten anyway."""
    arch = context.config["Arch"]
    if weights or replaced_weights:
        arch = without_backbone_download(arch)
    model = build_model(arch)
    if weights:
        load_model_weights(model, weights)
        context.logger.info("loaded weights from %s", weights)
    model.to(context.device)
    if context.channels_last:
        model.to(memory_format=torch.channels_last)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    context.logger.info("model %s: %.2fM parameters", context.config["Arch"]["name"], parameters / 1e6)
    return model


def without_backbone_download(arch: dict) -> dict:
    """A copy of the Arch section whose backbone is built with random weights (`pretrained`
    false), in the nesting ppq2l uses and in PaddleClas's flat spelling."""
    arch = copy.deepcopy(arch)
    if isinstance(arch.get("backbone"), dict) and arch["backbone"].get("pretrained"):
        arch["backbone"]["pretrained"] = False
    if arch.get("pretrained"):
        arch["pretrained"] = False
    return arch


def json_safe(value: Any) -> Any:
    """Replace NaN/inf (no JSON equivalent) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as JSON through a temporary file and a rename."""
    write_text_atomic(path, json.dumps(json_safe(data), indent=2) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one record as a JSON line."""
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(json_safe(record)) + "\n")


def open_tensorboard(output_dir: str | os.PathLike) -> Any:
    """A TensorBoard SummaryWriter logging to `output_dir/tensorboard` (`Global.use_tensorboard`);
    the tensorboard package is optional, so asking for it without it is a ConfigError."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ConfigError(f"Global.use_tensorboard is true but TensorBoard cannot be imported ({error}); "
                          "pip install tensorboard, or set Global.use_tensorboard=False "
                          "(metrics.jsonl holds the same numbers)") from None
    return SummaryWriter(log_dir=str(Path(output_dir) / "tensorboard"))
