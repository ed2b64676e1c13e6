"""ppq2l: multi-label image classification (Query2Label, ML-Decoder) from one YAML config.

`ppq2l.Predictor(model)(inputs)` predicts with a checkpoint or an exported model (see
ppq2l.predict). It is loaded on first use, so `import ppq2l` stays light and never imports torch."""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from ppq2l.predict import Predictor

        return Predictor
    raise AttributeError(f"module 'ppq2l' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + ["Predictor"])
