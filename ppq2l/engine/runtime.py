"""Where and how a run computes: device choice, seeding, threads and mixed precision."""
from __future__ import annotations

import contextlib
import random
from typing import Any, ContextManager

import numpy as np
import torch

from ppq2l.errors import ConfigError
from ppq2l.utils.logger import get_logger


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; `cpu`, `cuda` and `cuda:N` are taken as asked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"Global.device: {name!r} is not a device; use auto, cpu, cuda or "
                          f"cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"Global.device is {name!r} but CUDA is not available here; use "
                          f"Global.device=auto or cpu")
    return device


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def configure_threads(num_threads: int | None) -> None:
    """Cap torch's intra-op threads when the config asks for it."""
    if num_threads:
        torch.set_num_threads(int(num_threads))


class Precision:
    """The mixed-precision policy of a run, built from the optional AMP section: training
    autocasts to AMP.dtype; evaluation and inference compute in float32 unless
    AMP.use_fp16_test (PaddleClas's key; with dtype bfloat16 it means bfloat16) asks for the same
    autocast."""

    def __init__(self, amp_config: dict[str, Any] | None, device: torch.device) -> None:
        self.device = device
        self.dtype: torch.dtype | None = None
        if amp_config:
            dtype = torch.float16 if amp_config["dtype"] == "float16" else torch.bfloat16
            if dtype is torch.float16 and device.type != "cuda":
                get_logger().warning("AMP float16 needs CUDA; this %s run computes in float32 "
                                     "(AMP.dtype=bfloat16 works on CPU)", device.type)
            else:
                self.dtype = dtype
        self.test_dtype = self.dtype if (amp_config or {}).get("use_fp16_test") else None
        use_scaler = self.dtype is torch.float16
        self.scaler = torch.amp.GradScaler(
            device.type, enabled=use_scaler,
            init_scale=float((amp_config or {}).get("init_scale", 65536.0)),
            growth_interval=2000 if (amp_config or {}).get("use_dynamic_loss_scaling", True) else 10**9)

    @property
    def enabled(self) -> bool:
        """Whether autocast is active."""
        return self.dtype is not None

    def autocast(self) -> ContextManager:
        """The autocast context for forward passes (a no-op in float32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def test_autocast(self) -> ContextManager:
        """The autocast context for evaluation and inference: float32 unless AMP.use_fp16_test."""
        if self.test_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.test_dtype)

    def describe(self) -> str:
        """A short name for logs: the training precision and, when it differs, evaluation's."""
        def name(dtype: torch.dtype | None) -> str:
            return "float32" if dtype is None else str(dtype).replace("torch.", "")
        if self.test_dtype == self.dtype:
            return name(self.dtype)
        return f"{name(self.dtype)} (evaluation {name(self.test_dtype)})"
