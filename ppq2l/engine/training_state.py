"""The training state: what `latest.pth` holds (`training_state`) and how a run continues from it
(`restore_training_state`): model, EMA, optimizer, schedule, loss scaler, counters, best metric
and the random number generators, so a resumed run equals an uninterrupted one.

What resuming does when the config differs from the one the checkpoint was trained with.
Nothing changes silently. Per key:
- `Optimizer.name`: an error; the optimizer state (moments) of one optimizer means nothing to
  another. Start a new run from the weights instead (`Global.pretrained_model`).
- the rest of `Optimizer` (learning rate, schedule, weight decay, betas, ...), `Global.epochs`,
  `Global.update_freq` and the training batch size: applied from the resumed step on, with a
  warning. The optimizer keeps its moments; its hyperparameters and the schedule are the new
  config's, the schedule placed at the step the checkpoint reached.
- `Arch`, `Loss`, `EMA`, `AMP`, `DataLoader`, `Metric` and the other training keys of `Global`:
  applied, with a warning (the weights must still fit the model).
- bookkeeping keys (paths, printing, evaluation and save intervals, devices, threads, loader
  workers): applied, logged at info level.
The resolved config written to `config.yaml` is the one that runs.
"""
from __future__ import annotations

import logging
import random
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ppq2l.engine.checkpoint import check_state_dict, extract_state_dict, load_checkpoint
from ppq2l.engine.ema import ModelEMA
from ppq2l.errors import CheckpointError, ConfigError

# Keys whose change needs no warning: where and how often things are written or printed.
BOOKKEEPING = ("Global.output_dir", "Global.checkpoints", "Global.pretrained_model",
               "Global.print_batch_step", "Global.save_interval", "Global.save_interval_steps",
               "Global.eval_interval", "Global.eval_during_train", "Global.device",
               "Global.num_threads", "Global.use_tensorboard", "Global.overwrite",
               "Global.save_inference_dir", "Global.image_shape", "Global.export_dynamic_spatial",
               "Global.export_fp16", "Global.export_attention", "Infer", "Eval",
               "DataLoader.Train.loader", "DataLoader.Eval.loader")
# Keys that shape the learning-rate schedule: a change rebuilds it at the resumed step.
SCHEDULE = ("Optimizer", "Global.epochs", "Global.update_freq", "DataLoader.Train.sampler.batch_size",
            "DataLoader.Train.sampler.drop_last")
FORBIDDEN = {"Optimizer.name": "the optimizer state (moments, step counts) belongs to the "
                               "checkpoint's optimizer"}
MISSING = "(absent)"
# What a checkpoint needs to resume from; a best_model.pth has the weights only.
RESUMABLE = ("model", "optimizer", "lr_scheduler", "epoch")


@dataclass
class ResumePlan:
    """The differences between the checkpoint's config and this run's, and what they imply."""

    changes: list[tuple[str, Any, Any]] = field(default_factory=list)
    rebuild_schedule: bool = False

    def describe(self, keys: list[str]) -> str:
        """`key: old -> new` for the changes whose key is in `keys`."""
        return "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in self.changes
                         if key in keys)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Mappings flattened to dotted keys; lists and scalars are leaves."""
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def under(key: str, prefixes: tuple[str, ...]) -> bool:
    """Whether dotted `key` is one of `prefixes` or below one of them."""
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


def plan_resume(saved_config: Any, config: dict, path: str) -> ResumePlan:
    """Compare the checkpoint's config with this run's; a change that cannot carry over is a
    CheckpointError naming the key and the way forward."""
    plan = ResumePlan()
    if not isinstance(saved_config, dict):
        return plan  # a checkpoint without its config: nothing to compare against
    before, after = flatten(saved_config), flatten(config)
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key, MISSING), after.get(key, MISSING)
        if old == new:
            continue
        if key in FORBIDDEN:
            raise CheckpointError(
                f"cannot resume {path} with {key}={new!r}: it was trained with {old!r}, and "
                f"{FORBIDDEN[key]}. Resume with {key}={old!r}, or start a new run from its "
                f"weights: -o Global.pretrained_model={path} without Global.checkpoints")
        plan.changes.append((key, old, new))
        plan.rebuild_schedule |= under(key, SCHEDULE)
    return plan


def changes_to_report(plan: ResumePlan) -> tuple[list[str], list[str]]:
    """(keys worth a warning, bookkeeping keys) among the plan's changes."""
    keys = [key for key, _, _ in plan.changes]
    quiet = [key for key in keys if under(key, BOOKKEEPING)]
    return [key for key in keys if key not in quiet], quiet


def restore_optimization(optimizer: Optimizer, lr_scheduler: LRScheduler, state: dict,
                         rebuild_schedule: bool, global_step: int, path: str) -> None:
    """Load the checkpoint's optimizer state (its moments) and schedule position. With
    `rebuild_schedule` the freshly built optimizer's hyperparameters and schedule are kept and
    the schedule is moved to `global_step`, so the new config's values apply from there."""
    fresh = [{key: value for key, value in group.items() if key != "params"}
             for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError) as error:
        raise CheckpointError(
            f"cannot resume {path}: its optimizer state does not fit this optimizer ({error}); the "
            f"parameter groups differ (Optimizer.lr_multipliers, no_weight_decay_on_norm_and_bias "
            f"or the trainable parameters changed). Start a new run from its weights instead: "
            f"-o Global.pretrained_model={path}") from None
    if not rebuild_schedule:
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        return
    for group, hyperparameters in zip(optimizer.param_groups, fresh):
        group.update(hyperparameters)
    # Every schedule here computes its value from the step count alone, so placing the count one
    # before `global_step` and stepping once gives exactly the values a fresh run has there.
    lr_scheduler.last_epoch = global_step - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": intended
        lr_scheduler.step()


def capture_rng_state() -> dict[str, Any]:
    """The torch, Python, NumPy and CUDA random states, in types a weights-only checkpoint holds."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)),
                      "position": int(position), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached)},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng_state(rng: dict[str, Any]) -> None:
    """Restore what `capture_rng_state` saved (parts a checkpoint lacks are left alone)."""
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "python" in rng:
        random.setstate(rng["python"])
    if "numpy" in rng:
        saved = rng["numpy"]
        np.random.set_state((saved["name"], saved["keys"].numpy().astype(np.uint32),
                             saved["position"], saved["has_gauss"], saved["cached_gaussian"]))
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def training_state(model: nn.Module, ema: ModelEMA | None, optimizer: Optimizer,
                   lr_scheduler: LRScheduler, scaler: torch.amp.GradScaler, *, epoch: int,
                   epoch_batches: int, global_step: int, skipped_nonfinite: int,
                   best: dict[str, Any], config: dict) -> dict[str, Any]:
    """Everything needed to continue a run after `epoch` (or, with `epoch_batches` > 0, inside
    epoch `epoch + 1` after that many of its batches)."""
    return {
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema else None,
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "global_step": global_step,
        "epoch_batches": epoch_batches,
        "skipped_nonfinite": skipped_nonfinite,
        "best": dict(best),
        "rng": capture_rng_state(),
        "config": config,
    }


@dataclass
class Resumed:
    """Where a restored run continues, and the EMA it continues with."""

    start_epoch: int
    epoch_batches: int
    global_step: int
    skipped_nonfinite: int
    best: dict[str, Any]
    ema: ModelEMA | None


def restore_training_state(path: str, config: dict, model: nn.Module, ema: ModelEMA | None,
                           optimizer: Optimizer, lr_scheduler: LRScheduler,
                           scaler: torch.amp.GradScaler, *, epochs: int, best: dict[str, Any],
                           logger: logging.Logger) -> Resumed:
    """Load the `training_state` in `path` into the freshly built parts of a run (`best`: its
    empty record); a config that differs from the checkpoint's is applied key by key as this
    module's docstring says, and every change is logged."""
    state = load_checkpoint(path)
    missing = [key for key in RESUMABLE if key not in state]
    if missing:
        raise CheckpointError(f"{path} cannot resume training: it lacks {', '.join(missing)} "
                              f"(a best_model.pth holds weights only; resume from latest.pth, or "
                              f"pass it as Global.pretrained_model to start from its weights)")
    plan = plan_resume(state.get("config"), config, str(path))
    warned, quiet = changes_to_report(plan)
    if warned:
        logger.warning("resuming %s with a config that differs from its own; the new values "
                       "apply from here: %s", path, plan.describe(warned))
    if quiet:
        logger.info("resuming with other paths or intervals: %s", plan.describe(quiet))
    weights = extract_state_dict(state, path)
    check_state_dict(model, weights, source=str(path))
    model.load_state_dict(weights)
    ema = restore_ema(ema, model, state.get("ema"), path, logger)
    global_step = int(state.get("global_step", 0))
    restore_optimization(optimizer, lr_scheduler, state, plan.rebuild_schedule, global_step,
                         str(path))
    if plan.rebuild_schedule:
        logger.warning("the optimizer settings and learning-rate schedule of the config apply "
                       "from step %d (lr now %.3g)", global_step,
                       float(optimizer.param_groups[0]["lr"]))
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if int(state["epoch"]) >= epochs:
        raise ConfigError(f"{path} has already trained {state['epoch']} epochs and Global.epochs "
                          f"is {epochs}: nothing left to train. Raise Global.epochs to train longer")
    resumed = Resumed(start_epoch=int(state["epoch"]) + 1,
                      epoch_batches=int(state.get("epoch_batches", 0)), global_step=global_step,
                      skipped_nonfinite=int(state.get("skipped_nonfinite", 0)),
                      best=dict(state.get("best") or best), ema=ema)
    restore_rng_state(state.get("rng") or {})
    value = resumed.best["value"]
    logger.info("resumed from %s: continuing at epoch %d after its batch %d (step %d), best %s %s",
                path, resumed.start_epoch, resumed.epoch_batches, global_step, best["metric"],
                "n/a" if value is None else f"{value:.2f}")
    return resumed


def restore_ema(ema: ModelEMA | None, model: nn.Module, saved: dict[str, Any] | None, path: str,
                logger: logging.Logger) -> ModelEMA | None:
    """The run's EMA after resuming: the saved one, or (saved without EMA) one restarted from
    `model`; EMA weights the config has no EMA section for are dropped with a warning."""
    if ema is None:
        if saved is not None:
            logger.warning("%s has EMA weights but the config has no EMA section: they are "
                           "dropped", path)
        return None
    if saved is None:
        logger.warning("%s has no EMA weights; the EMA restarts from the model", path)
        return ModelEMA(model, ema.decay, ema.warmup)
    check_state_dict(ema.module, saved.get("module", {}), source=f"{path} (its EMA weights)")
    ema.load_state_dict(saved)
    return ema
