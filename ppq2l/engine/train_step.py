"""The arithmetic of one training step, shared by the Trainer and benchmarks/bench_train.py: the
loss of a batch under the run's autocast, and one update from the accumulated gradients."""
from __future__ import annotations

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ppq2l.engine.ema import ModelEMA
from ppq2l.engine.runtime import Precision


def compute_training_loss(model: torch.nn.Module, loss_fn: torch.nn.Module, images: torch.Tensor,
                          targets: torch.Tensor, precision: Precision) -> torch.Tensor:
    """The training loss of one batch: the forward pass under the run's autocast, the loss outside
    it (losses compute in float32 or wider)."""
    with precision.autocast():
        logits = model(images)
    return loss_fn(logits, targets)["loss"]


def apply_gradients(model: torch.nn.Module, optimizer: Optimizer, scaler: torch.amp.GradScaler,
                    lr_scheduler: LRScheduler, ema: ModelEMA | None,
                    clip_grad_norm: float | None = None) -> None:
    """One update from the accumulated gradients: optional clipping (of the unscaled gradients),
    the optimizer step through the loss scaler, gradients cleared, the schedule advanced and the
    EMA moved towards the new weights."""
    if clip_grad_norm:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(clip_grad_norm))
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    lr_scheduler.step()
    if ema is not None:
        ema.update(model)
