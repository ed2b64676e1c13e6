"""Model size and cost: parameter counts and multiply-accumulates of one forward pass.

Cost convention: torch.utils.flop_counter.FlopCounterMode counts a multiply-add as 2 FLOPs. The
Query2Label, ML-Decoder and TResNet papers (like most model zoos) report multiply-accumulates
(MACs) under the name "FLOPs", so `forward_gmacs` halves the counter's total and the report
prints that number as "GFLOPs (MACs)". Only matrix products and convolutions are counted
(FlopCounterMode's coverage); elementwise ops, norms and softmax are not."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ppq2l.checks import number_list
from ppq2l.errors import ConfigError

# FlopCounterMode counts one multiply-add as this many FLOPs.
FLOPS_PER_MAC = 2


@dataclass(frozen=True)
class ModelInfo:
    """Parameter counts and the cost of one forward pass of one image."""
    total_params: int
    trainable_params: int
    gmacs: float
    image_shape: tuple[int, int, int]

    def report(self) -> str:
        """Human-readable lines; GFLOPs follow the papers' convention (MACs)."""
        channels, height, width = self.image_shape
        return "\n".join([
            f"params: {self.total_params / 1e6:.2f} M total, "
            f"{self.trainable_params / 1e6:.2f} M trainable",
            f"GFLOPs (multiply-adds counted once, as the papers do): {self.gmacs:.2f} "
            f"at {channels}x{height}x{width}",
        ])


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all parameters, parameters with requires_grad) of `model`."""
    total = sum(parameter.numel() for parameter in model.parameters())
    trainable = sum(parameter.numel() for parameter in model.parameters()
                    if parameter.requires_grad)
    return total, trainable


def check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """Global.image_shape as (C, H, W) of positive integers, else a ConfigError."""
    channels, height, width = number_list(image_shape, "Global.image_shape", length=3,
                                          integers=True, minimum=1,
                                          example="[3, 224, 224] (channels, height, width)")
    return channels, height, width


def forward_gmacs(model: nn.Module, image_shape: Sequence[int]) -> float:
    """Giga multiply-accumulates of `model` on one image of `image_shape` (C, H, W), eval mode."""
    shape = check_image_shape(image_shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *shape))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / FLOPS_PER_MAC / 1e9


def model_info(model: nn.Module, image_shape: Sequence[int]) -> ModelInfo:
    """Parameter counts and GMACs of `model` at `image_shape`."""
    total, trainable = count_parameters(model)
    return ModelInfo(total, trainable, forward_gmacs(model, image_shape),
                     check_image_shape(image_shape))


def model_info_from_config(config: dict) -> ModelInfo:
    """ModelInfo of the config's Arch at its Global.image_shape."""
    from ppq2l.arch import build_model

    global_cfg = config.get("Global") or {}
    if "image_shape" not in global_cfg:
        raise ConfigError("Global.image_shape is missing: model_info needs the input size "
                          "[channels, height, width]")
    return model_info(build_model(config["Arch"]), global_cfg["image_shape"])
