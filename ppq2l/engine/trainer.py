"""Training: one epoch of optimisation, evaluation of the regular and EMA weights, and the
checkpoints (`latest.pth` every epoch, `best_model.pth` when the main metric improves)."""
from __future__ import annotations

import math
import random
import time
from typing import Any

import torch

from ppq2l.data import build_dataloader
from ppq2l.engine.checkpoint import check_state_dict, load_checkpoint, save_checkpoint
from ppq2l.engine.components import (RunContext, append_jsonl, build_model_for_run,
                                     require_section, start_run)
from ppq2l.engine.ema import ModelEMA
from ppq2l.engine.evaluator import compute_metrics, format_metrics, main_metric_key, predict_scores
from ppq2l.errors import CheckpointError, Ppq2lError
from ppq2l.loss import build_loss
from ppq2l.metric import build_metrics
from ppq2l.optimizer import build_optimizer
from ppq2l.utils.logger import progress

LATEST, BEST = "latest.pth", "best_model.pth"


class NonFiniteLossError(Ppq2lError):
    """The loss became NaN or infinite; the last checkpoint on disk is left as it was."""


class Trainer:
    """Builds every component of a training run from the config and runs it."""

    def __init__(self, config: dict) -> None:
        self.context: RunContext = start_run(config, "train.log")
        self.config, self.logger = config, self.context.logger
        settings = config["Global"]
        self.epochs = int(settings["epochs"])
        self.model = build_model_for_run(self.context, settings["pretrained_model"])
        use_cuda = self.context.device.type == "cuda"
        seed = int(settings["seed"])
        self.train_loader = build_dataloader(require_section(config, "DataLoader.Train"), "Train",
                                             self.context.class_num, seed, use_cuda)
        self.eval_loader = None
        if settings["eval_during_train"]:
            self.eval_loader = build_dataloader(require_section(config, "DataLoader.Eval"), "Eval",
                                                self.context.class_num, seed, use_cuda)
        self.loss_fn = build_loss(require_section(config, "Loss.Train"), where="Loss.Train")
        self.metrics = build_metrics((config.get("Metric") or {}).get("Eval"), where="Metric.Eval")
        self.main_key = main_metric_key(self.metrics)
        self.optimizer, self.lr_scheduler = build_optimizer(
            require_section(config, "Optimizer"), self.model, len(self.train_loader), self.epochs)
        ema_config = config.get("EMA")
        self.ema = ModelEMA(self.model, ema_config["decay"], ema_config["warmup"]) if ema_config else None
        self.scaler = self.context.precision.scaler
        self.start_epoch, self.global_step = 1, 0
        self.best: dict[str, Any] = {"metric": self.main_key, "value": None, "epoch": None, "source": None}
        if settings["checkpoints"]:
            self.resume(settings["checkpoints"])

    # ----------------------------------------------------------------------------- checkpoints
    def checkpoint_state(self, epoch: int) -> dict[str, Any]:
        """Everything needed to continue this run after `epoch`."""
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "global_step": self.global_step,
            "best": dict(self.best),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "config": self.config,
        }

    def resume(self, path: str) -> None:
        """Continue from a `latest.pth` written by this trainer."""
        state = load_checkpoint(path)
        missing = [key for key in ("model", "optimizer", "lr_scheduler", "epoch") if key not in state]
        if missing:
            raise CheckpointError(f"{path} cannot resume training: it lacks {', '.join(missing)} "
                                  f"(a best_model.pth holds weights only; resume from latest.pth, or "
                                  f"pass it as Global.pretrained_model to start from its weights)")
        check_state_dict(self.model, state["model"], source=str(path))
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if state.get("ema") is None:
                self.logger.warning("%s has no EMA weights; the EMA restarts from the model", path)
                self.ema = ModelEMA(self.model, self.ema.decay, self.ema.warmup)
            else:
                self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"]) + 1
        self.global_step = int(state.get("global_step", 0))
        self.best = dict(state.get("best") or self.best)
        rng = state.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "python" in rng:
            random.setstate(rng["python"])
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.logger.info("resumed from %s: continuing at epoch %d (step %d), best %s = %s",
                         path, self.start_epoch, self.global_step, self.main_key, self.best["value"])

    # ----------------------------------------------------------------------------- training
    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training loader; returns the mean loss, last lr and throughput."""
        context, model = self.context, self.model
        model.train()
        memory_format = torch.channels_last if context.channels_last else torch.contiguous_format
        clip = self.config["Global"]["clip_grad_norm"]
        print_every = max(1, int(self.config["Global"]["print_batch_step"]))
        loss_sum, seen, started = 0.0, 0, time.perf_counter()
        bar = progress(self.train_loader, desc=f"epoch {epoch}/{self.epochs}")
        for step, (images, targets) in enumerate(bar, start=1):
            images = images.to(context.device, non_blocking=True, memory_format=memory_format)
            targets = targets.to(context.device, non_blocking=True)
            with context.precision.autocast():
                logits = model(images)
            loss = self.loss_fn(logits, targets)["loss"]
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(
                    f"the loss is {loss_value} at epoch {epoch}, step {step} (global step "
                    f"{self.global_step + 1}); training stopped and {LATEST} was left as it was. "
                    f"Try a lower Optimizer.lr.learning_rate, Global.clip_grad_norm, or AMP.dtype=bfloat16")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(clip))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.lr_scheduler.step()
            if self.ema is not None:
                self.ema.update(model)
            self.global_step += 1
            loss_sum += loss_value * images.shape[0]
            seen += images.shape[0]
            if step % print_every == 0 or step == len(self.train_loader):
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", lr=f"{self.current_lr():.2e}",
                                     img_s=f"{seen / (time.perf_counter() - started):.1f}")
        bar.close()
        elapsed = time.perf_counter() - started
        return {"loss": loss_sum / max(seen, 1), "lr": self.current_lr(),
                "images_per_second": seen / elapsed, "epoch_seconds": elapsed}

    def current_lr(self) -> float:
        """The learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def evaluate(self, epoch: int) -> dict[str, Any]:
        """Evaluate the regular and the EMA weights; save `best_model.pth` if either is the best yet."""
        context, results = self.context, {}
        candidates = [("model", self.model)] + ([("ema", self.ema.module)] if self.ema else [])
        for source, network in candidates:
            scores, targets = predict_scores(network, self.eval_loader, context.device,
                                             context.precision, context.channels_last, desc=source)
            results[source] = compute_metrics(self.metrics, scores, targets)
            scalars = {key: value for key, value in results[source].items() if key != "per_class_AP"}
            self.logger.info("epoch %d %s: %s", epoch, source, format_metrics(scalars))
        source = max(results, key=lambda name: _rank(results[name].get(self.main_key)))
        value = results[source].get(self.main_key)
        if value is not None and (self.best["value"] is None or value > self.best["value"]):
            self.best = {"metric": self.main_key, "value": float(value), "epoch": epoch, "source": source}
            weights = dict(candidates)[source].state_dict()
            save_checkpoint({"model": weights, "epoch": epoch, "source": source,
                             "metrics": results[source], "config": self.config},
                            context.output_dir / BEST)
            self.logger.info("new best %s %.2f (%s weights, epoch %d) -> %s", self.main_key, value,
                             source, epoch, context.output_dir / BEST)
        return results

    def train(self) -> dict[str, Any]:
        """Run the configured epochs; returns the best metric record."""
        settings, context = self.config["Global"], self.context
        patience = int(settings["early_stop_patience"] or 0)
        self.logger.info("training %d epochs of %d steps (batch %d)", self.epochs,
                         len(self.train_loader), self.train_loader.batch_size or 0)
        for epoch in range(self.start_epoch, self.epochs + 1):
            if hasattr(self.train_loader, "set_epoch"):
                self.train_loader.set_epoch(epoch)
            stats = self.train_one_epoch(epoch)
            self.logger.info("epoch %d/%d: loss %.4f, lr %.2e, %.1f img/s, %.0f s", epoch,
                             self.epochs, stats["loss"], stats["lr"], stats["images_per_second"],
                             stats["epoch_seconds"])
            record: dict[str, Any] = {"epoch": epoch, "step": self.global_step, **stats}
            due = epoch % max(1, int(settings["eval_interval"])) == 0 or epoch == self.epochs
            if self.eval_loader is not None and due:
                results = self.evaluate(epoch)
                record.update({f"{source}_{key}": value for source, values in results.items()
                               for key, value in values.items() if key != "per_class_AP"})
            save_checkpoint(self.checkpoint_state(epoch), context.output_dir / LATEST)
            if settings["save_interval"] and epoch % int(settings["save_interval"]) == 0:
                save_checkpoint(self.checkpoint_state(epoch), context.output_dir / f"epoch_{epoch}.pth")
            append_jsonl(context.output_dir / "metrics.jsonl", record)
            if patience and self.best["epoch"] is not None and epoch - self.best["epoch"] >= patience:
                self.logger.info("early stop: %s has not improved for %d epochs", self.main_key, patience)
                break
        self.logger.info("done: best %s %s at epoch %s (%s weights)", self.main_key,
                         "n/a" if self.best["value"] is None else f"{self.best['value']:.2f}",
                         self.best["epoch"], self.best["source"])
        return self.best


def _rank(value: Any) -> float:
    """Order metric values, putting a missing or NaN value last."""
    return float("-inf") if value is None or value != value else float(value)
