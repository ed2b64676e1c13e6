"""Exponential moving average of a model's whole state dict (weights and buffers), as the
official Query2Label and ML-Decoder recipes keep it."""
from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """Keeps `module`, an evaluation-mode copy of a model whose floating-point state follows
    ema = decay * ema + (1 - decay) * current after every optimizer step."""

    def __init__(self, model: nn.Module, decay: float = 0.9997, warmup: bool = False) -> None:
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.updates = 0

    def current_decay(self) -> float:
        """The decay for the next update; with warm-up it grows from 0.1 towards `decay` so the
        average is not dominated by the random initial weights."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model`'s current state."""
        decay = self.current_decay()
        self.updates += 1
        averaged, current = [], []
        for (_, ema_value), value in zip(self.module.state_dict().items(),
                                            model.state_dict().values()):
            if ema_value.dtype.is_floating_point:
                averaged.append(ema_value)
                current.append(value.detach().to(ema_value.dtype))
            else:  # integer buffers such as BatchNorm's num_batches_tracked are copied
                ema_value.copy_(value)
        if averaged:
            torch._foreach_lerp_(averaged, current, 1.0 - decay)

    def state_dict(self) -> dict:
        """Weights and update count, for checkpoints."""
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` saved."""
        self.module.load_state_dict(state["module"])
        self.updates = int(state.get("updates", 0))
