"""Training and evaluation built from a config."""
from ppq2l.engine.evaluator import evaluate_from_config
from ppq2l.engine.trainer import Trainer

__all__ = ["Trainer", "evaluate_from_config"]
