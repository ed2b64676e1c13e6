"""Training: one epoch of optimisation, evaluation of the regular and EMA weights, and the
checkpoints (`latest.pth` every epoch and every `Global.save_interval_steps` optimizer steps,
`best_model.pth` when the main metric improves). Under torchrun the model runs in
DistributedDataParallel; rank 0 alone logs and writes files. `Global.update_freq: N` accumulates
the gradients of N micro-batches (each loss divided by N) before one optimizer/scheduler/EMA step."""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ppq2l.config import save_config
from ppq2l.data import build_dataloader
from ppq2l.data.device_normalize import DeviceLoader
from ppq2l.data.loader_workers import describe_worker_death
from ppq2l.engine.checkpoint import first_nonfinite_tensor, save_checkpoint
from ppq2l.engine.components import (
    RunContext,
    append_jsonl,
    build_model_for_run,
    open_tensorboard,
    require_section,
    start_run,
)
from ppq2l.engine.distributed import (
    barrier,
    broadcast_buffers,
    cleanup,
    get_world_size,
    is_distributed,
    is_main_process,
    mean_over_ranks,
)
from ppq2l.engine.early_stop import EarlyStop, check_epochs_left, last_epoch
from ppq2l.engine.ema import ModelEMA
from ppq2l.engine.evaluator import (
    build_eval_loss,
    check_unknown_labels,
    compute_metrics,
    format_metrics,
    main_metric_key,
    predict_dataset,
    with_loss,
)
from ppq2l.engine.run_folder import release_lock, start_training
from ppq2l.engine.stop_signals import StopSignals
from ppq2l.engine.train_step import apply_gradients, compute_training_loss
from ppq2l.engine.training_state import restore_training_state, training_state
from ppq2l.errors import Ppq2lError, RunStopped
from ppq2l.loss import build_loss
from ppq2l.metric import build_metrics
from ppq2l.optimizer import build_optimizer
from ppq2l.utils.logger import progress

LATEST, BEST = "latest.pth", "best_model.pth"


class NonFiniteLossError(Ppq2lError):
    """The loss became NaN or infinite; the last checkpoint on disk is left as it was."""


class DivergedError(Ppq2lError):
    """The weights or the evaluation scores became NaN or infinite; nothing was saved from them."""


class Trainer:
    """Builds every component of a training run from the config and runs it."""

    def __init__(self, config: dict) -> None:
        self.context: RunContext = start_run(config, "train.log", training=True)
        self.config, self.logger = config, self.context.logger
        settings = config["Global"]
        self.epochs = int(settings["epochs"])
        self.last_epoch = last_epoch(settings)  # Global.stop_epoch, else Global.epochs
        self.model = build_model_for_run(self.context, settings["pretrained_model"],
                                         replaced_weights=bool(settings["checkpoints"]))
        self.update_freq = max(1, int(settings["update_freq"]))
        self.train_model: torch.nn.Module = self.model
        if is_distributed():
            if settings["sync_bn"]:
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            device_ids = [self.context.device.index] if self.context.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=device_ids)
        if settings["compile"]:
            # Only the module the training step calls is compiled; checkpoints, EMA and evaluation
            # use self.model, so saved keys carry no compile-wrapper prefix.
            self.train_model = torch.compile(self.train_model)
        use_cuda = self.context.device.type == "cuda"
        seed = int(settings["seed"])
        self.train_loader = build_dataloader(require_section(config, "DataLoader.Train"), "Train",
                                             self.context.class_num, seed, use_cuda)
        self.eval_loader = None
        if settings["eval_during_train"]:
            self.eval_loader = build_dataloader(require_section(config, "DataLoader.Eval"), "Eval",
                                                self.context.class_num, seed, use_cuda)
        self.loss_fn = build_loss(require_section(config, "Loss.Train"), where="Loss.Train")
        self.eval_loss_fn = build_eval_loss(config)
        check_unknown_labels(self.loss_fn, self.train_loader, "DataLoader.Train.dataset")
        if self.eval_loader is not None:
            check_unknown_labels(self.eval_loss_fn, self.eval_loader, "DataLoader.Eval.dataset")
        for loss_fn in (self.loss_fn, self.eval_loss_fn):  # their buffers (pos_weight, a selective
            if loss_fn is not None:  # prior) on the device once instead of a copy every step
                loss_fn.to(self.context.device)
        self.metrics = build_metrics((config.get("Metric") or {}).get("Eval"), where="Metric.Eval")
        self.main_key = main_metric_key(self.metrics)
        self.optimizer, self.lr_scheduler = build_optimizer(
            require_section(config, "Optimizer"), self.model, self.steps_per_epoch(), self.epochs)
        ema_config = config.get("EMA")
        self.ema = ModelEMA(self.model, ema_config["decay"], ema_config["warmup"]) if ema_config else None
        self.early_stop = EarlyStop(settings["early_stop_rule"], settings["early_stop_patience"],
                                    has_ema=self.ema is not None)
        self.scaler = self.context.precision.scaler
        self.start_epoch, self.global_step, self.resume_batches, self.skipped_nonfinite = 1, 0, 0, 0
        self.tensorboard = (open_tensorboard(self.context.output_dir)
                            if settings["use_tensorboard"] and is_main_process() else None)
        self.best: dict[str, Any] = {"metric": self.main_key, "value": None, "epoch": None, "source": None}
        self.stop = StopSignals(self.logger)
        if settings["checkpoints"]:
            self.resume(settings["checkpoints"])

    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch: one per `update_freq` micro-batches (a partial group at the
        end of the epoch also steps)."""
        return -(-len(self.train_loader) // self.update_freq)

    def resume(self, path: str) -> None:
        """Continue from a `latest.pth` written by this trainer (see training_state.py)."""
        resumed = restore_training_state(path, self.config, self.model, self.ema, self.optimizer,
                                         self.lr_scheduler, self.scaler, epochs=self.epochs,
                                         best=self.best, logger=self.logger)
        self.ema, self.best = resumed.ema, resumed.best
        self.start_epoch, self.resume_batches = resumed.start_epoch, resumed.epoch_batches
        self.global_step, self.skipped_nonfinite = resumed.global_step, resumed.skipped_nonfinite
        check_epochs_left(path, self.start_epoch, self.last_epoch)

    # --------------------------------------------------------------------------------- running
    def train(self) -> dict[str, Any]:
        """Run the configured epochs; returns the best metric record. Writes `config.yaml` (the
        config that runs) first; SIGTERM/Ctrl-C stop after writing `latest.pth` (RunStopped)."""
        settings = self.config["Global"]
        lock = (start_training(self.context.output_dir, settings["checkpoints"],
                               bool(settings["overwrite"]), self.logger)
                if is_main_process() else None)
        try:
            with self.stop:
                return self.run_epochs()
        except RuntimeError as error:
            # torch reports a worker killed (out of memory) from its SIGCHLD handler, which can
            # fire anywhere in the step, not only inside the loader that translates it
            died = describe_worker_death(error, "DataLoader.Train", self.train_loader.num_workers)
            if died is None:
                raise
            raise died from None
        finally:
            release_lock(lock)
            cleanup()  # leave the process group (torchrun runs) before the interpreter exits

    def run_epochs(self) -> dict[str, Any]:
        """The epoch loop of `train`."""
        settings, context = self.config["Global"], self.context
        if is_main_process():
            save_config(self.config, context.output_dir / "config.yaml")
        self.logger.info("training %d epochs (to epoch %d) of %d batches of %d per process x %d "
                         "process(es), update every %d batch(es)", self.epochs, self.last_epoch,
                         len(self.train_loader), self.train_loader.batch_size or 0, get_world_size(),
                         self.update_freq)
        epoch = self.start_epoch - 1
        for epoch in range(self.start_epoch, self.last_epoch + 1):
            first_batch, self.resume_batches = self.resume_batches, 0
            self.train_loader.set_epoch(epoch, first_batch)
            stats = self.train_one_epoch(epoch, first_batch)
            memory = f", peak GPU memory {stats['peak_memory_gib']:.2f} GiB" if "peak_memory_gib" in stats else ""
            self.logger.info("epoch %d/%d: loss %.4f, lr %.2e, %.1f img/s, data wait %.0f%%, %.0f s, "
                             "%d non-finite steps skipped, %d bad images skipped%s", epoch,
                             self.epochs, stats["loss"], stats["lr"], stats["images_per_second"],
                             100 * stats["data_wait_fraction"], stats["epoch_seconds"],
                             stats["skipped_nonfinite"], stats["skipped_images"], memory)
            record: dict[str, Any] = {"epoch": epoch, "step": self.global_step, **stats}
            due = epoch % max(1, int(settings["eval_interval"])) == 0 or epoch == self.last_epoch
            if self.eval_loader is not None and due:
                results = self.evaluate(epoch)
                record.update({f"{source}_{key}": value for source, values in results.items()
                               for key, value in values.items() if key != "per_class_AP"})
            self.save_latest(epoch)
            if is_main_process():
                if settings["save_interval"] and epoch % int(settings["save_interval"]) == 0:
                    save_checkpoint(self.checkpoint_state(epoch), context.output_dir / f"epoch_{epoch}.pth")
                append_jsonl(context.output_dir / "metrics.jsonl", record)
                if self.tensorboard is not None:
                    for key, value in record.items():
                        if isinstance(value, (int, float)) and key != "epoch":
                            self.tensorboard.add_scalar(key, value, epoch)
                    self.tensorboard.flush()
            signum = self.stop.requested(context.device) if epoch < self.last_epoch else None
            if signum:
                raise RunStopped(f"{LATEST} holds the end of epoch {epoch}; continue with "
                                 f"-o Global.checkpoints={context.output_dir / LATEST}", signum)
            if self.early_stop.should_stop(epoch, self.best):
                self.logger.info("early stop (%s rule): %s has not improved for %d epochs",
                                 self.early_stop.rule, self.main_key, self.early_stop.patience)
                break
        if self.eval_loader is None:
            self.save_unevaluated_best(epoch)
        self.logger.info("done: best %s %s at epoch %s (%s weights)", self.main_key,
                         "n/a" if self.best["value"] is None else f"{self.best['value']:.2f}",
                         self.best["epoch"], self.best["source"])
        return self.best

    # ------------------------------------------------------------------------------- one epoch
    def train_one_epoch(self, epoch: int, first_batch: int = 0) -> dict[str, float]:
        """One pass over the training loader, starting after `first_batch` batches (a resumed
        mid-epoch run); returns the mean loss, last lr, throughput, data-wait fraction and peak
        GPU memory."""
        context, settings = self.context, self.config["Global"]
        self.train_model.train()
        memory_format = torch.channels_last if context.channels_last else torch.contiguous_format
        print_every = max(1, int(settings["print_batch_step"]))
        interval = int(settings["save_interval_steps"] or 0)
        total = len(self.train_loader)
        loss_sum, seen, waited, started = 0.0, 0, 0.0, time.perf_counter()
        if context.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(context.device)
        bar = progress(DeviceLoader(self.train_loader, context.device, memory_format),
                       desc=f"epoch {epoch}/{self.epochs}")
        fetch_started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        received = 0  # samples that reached the loop; the rest were skipped bad images
        for step, (images, targets) in enumerate(bar, start=first_batch + 1):
            waited += time.perf_counter() - fetch_started
            received += images.shape[0]
            if images.shape[0] == 0:  # a batch of unreadable images only (skip_bad_images)
                fetch_started = time.perf_counter()
                continue
            targets = targets.to(context.device, non_blocking=True)
            boundary = step % self.update_freq == 0 or step == total
            sync = nullcontext() if boundary or not is_distributed() else self.train_model.no_sync()
            with sync:
                loss = compute_training_loss(self.train_model, self.loss_fn, images, targets,
                                             context.precision)
                loss_value = mean_over_ranks(loss.item(), context.device)
                if not math.isfinite(loss_value):
                    self.handle_nonfinite(loss_value, epoch, step)
                    fetch_started = time.perf_counter()
                    continue
                self.scaler.scale(loss / self.update_freq).backward()
            if boundary:
                self.optimizer_step()
                if interval and self.global_step % interval == 0 and step < total:
                    self.save_latest(epoch - 1, step)
                signum = self.stop.requested(context.device) if step < total else None
                if signum:
                    self.save_latest(epoch - 1, step)
                    raise RunStopped(f"{LATEST} holds epoch {epoch} up to its batch {step} of {total} "
                                     f"(step {self.global_step}); continue with -o Global.checkpoints="
                                     f"{context.output_dir / LATEST}", signum)
            loss_sum += loss_value * images.shape[0]
            seen += images.shape[0]
            if step % print_every == 0 or step == total:
                elapsed = time.perf_counter() - started
                bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.4f}", lr=f"{self.current_lr():.2e}",
                                img_s=f"{seen * get_world_size() / elapsed:.1f}",
                                data=f"{waited / elapsed:.0%}", **self.memory_postfix())
            fetch_started = time.perf_counter()
        bar.close()
        elapsed = time.perf_counter() - started
        stats = {"loss": loss_sum / max(seen, 1), "lr": self.current_lr(),
                 "images_per_second": seen * get_world_size() / elapsed,
                 "data_wait_fraction": waited / elapsed, "epoch_seconds": elapsed,
                 "skipped_nonfinite": self.skipped_nonfinite,
                 "skipped_images": self.expected_samples(first_batch) - received}
        if context.device.type == "cuda":
            stats["peak_memory_gib"] = torch.cuda.max_memory_allocated(context.device) / 2 ** 30
        return stats

    def expected_samples(self, first_batch: int) -> int:
        """How many samples this process's loader hands out in an epoch started after
        `first_batch` batches (what it delivers less is what `skip_bad_images` dropped)."""
        batch_size = int(self.train_loader.batch_size or 1)
        if self.train_loader.drop_last:
            return (len(self.train_loader) - first_batch) * batch_size
        return len(self.train_loader.sampler) - first_batch * batch_size

    def optimizer_step(self) -> None:
        """Apply the accumulated gradients: clip, optimizer, scaler, scheduler and EMA."""
        apply_gradients(self.model, self.optimizer, self.scaler, self.lr_scheduler, self.ema,
                        self.config["Global"]["clip_grad_norm"])
        self.global_step += 1

    def handle_nonfinite(self, loss_value: float, epoch: int, step: int) -> None:
        """Skip a NaN/Inf loss while `Global.skip_nonfinite_steps` allows, else stop the run with
        the last good checkpoint untouched."""
        allowed = int(self.config["Global"]["skip_nonfinite_steps"] or 0)
        self.optimizer.zero_grad(set_to_none=True)  # drop this accumulation group's gradients
        if self.skipped_nonfinite < allowed:
            self.skipped_nonfinite += 1
            self.logger.warning("the loss is %s at epoch %d, step %d: batch skipped (%d of %d "
                                "allowed by Global.skip_nonfinite_steps)", loss_value, epoch, step,
                                self.skipped_nonfinite, allowed)
            return
        raise NonFiniteLossError(
            f"the loss is {loss_value} at epoch {epoch}, step {step} (global step "
            f"{self.global_step + 1}); training stopped and {LATEST} was left as it was. "
            f"Try a lower Optimizer.lr.learning_rate, Global.clip_grad_norm, AMP.dtype=bfloat16, "
            f"or Global.skip_nonfinite_steps")

    def memory_postfix(self) -> dict[str, str]:
        """Peak GPU memory for the progress line (nothing on CPU)."""
        if self.context.device.type != "cuda":
            return {}
        return {"mem": f"{torch.cuda.max_memory_allocated(self.context.device) / 2 ** 30:.1f}G"}

    def current_lr(self) -> float:
        """The learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    # -------------------------------------------------------------- evaluation and checkpoints
    def evaluate(self, epoch: int) -> dict[str, Any]:
        """Evaluate the regular and the EMA weights; save `best_model.pth` if either is the best yet."""
        context, results = self.context, {}
        candidates = [("model", self.model)] + ([("ema", self.ema.module)] if self.ema else [])
        for source, network in candidates:
            broadcast_buffers(network)
            scores, targets, loss = predict_dataset(network, self.eval_loader, context.device,
                                                    context.precision, context.channels_last,
                                                    desc=source, loss_fn=self.eval_loss_fn)
            bad = int((~np.isfinite(scores)).any(axis=1).sum())
            if bad:
                raise DivergedError(
                    f"the {source} weights give NaN or infinite scores for {bad} of {len(scores)} "
                    f"evaluation images at epoch {epoch}: training has diverged and stopped; "
                    f"{self.last_good_files()}. Try a lower Optimizer.lr.learning_rate, "
                    f"Global.clip_grad_norm or AMP.dtype=bfloat16")
            results[source] = with_loss(compute_metrics(self.metrics, scores, targets), loss)
            scalars = {key: value for key, value in results[source].items() if key != "per_class_AP"}
            self.logger.info("epoch %d %s: %s", epoch, source, format_metrics(scalars))
        EarlyStop.record(self.best, epoch, {name: values.get(self.main_key)
                                            for name, values in results.items()})
        source = max(results, key=lambda name: _rank(results[name].get(self.main_key)))
        value = results[source].get(self.main_key)
        if value is not None and (self.best["value"] is None or value > self.best["value"]):
            self.best.update(metric=self.main_key, value=float(value), epoch=epoch, source=source)
            self.save_best(dict(candidates)[source], epoch, source, metrics=results[source])
            self.logger.info("new best %s %.2f (%s weights, epoch %d) -> %s", self.main_key, value,
                             source, epoch, context.output_dir / BEST)
        return results

    def save_latest(self, epoch: int, epoch_batches: int = 0) -> None:
        """Rank 0 writes `latest.pth` (atomically); every rank waits until it is on disk. Weights
        that are no longer finite are never written: the run stops with the last good file."""
        self.check_finite_weights(f"epoch {epoch + (1 if epoch_batches else 0)}")
        if is_main_process():
            save_checkpoint(self.checkpoint_state(epoch, epoch_batches), self.context.output_dir / LATEST,
                            keep_previous=True)
        barrier()

    def save_best(self, network: torch.nn.Module, epoch: int, source: str, **details: Any) -> None:
        """Rank 0 writes `best_model.pth`: `network`'s weights, their epoch and source (model or
        ema), `details` and the config; every rank waits until it is on disk."""
        if is_main_process():
            save_checkpoint({"model": network.state_dict(), "epoch": epoch, "source": source,
                             **details, "config": self.config}, self.context.output_dir / BEST)
        barrier()

    def checkpoint_state(self, epoch: int, epoch_batches: int = 0) -> dict[str, Any]:
        """The training state after `epoch` (and `epoch_batches` batches of the next one)."""
        return training_state(self.model, self.ema, self.optimizer, self.lr_scheduler, self.scaler,
                              epoch=epoch, epoch_batches=epoch_batches, global_step=self.global_step,
                              skipped_nonfinite=self.skipped_nonfinite, best=self.best,
                              config=self.config)

    def check_finite_weights(self, when: str) -> None:
        """DivergedError when the model (or its EMA) holds a NaN or infinite value."""
        for source, network in [("model", self.model)] + ([("ema", self.ema.module)] if self.ema else []):
            name = first_nonfinite_tensor(network.state_dict())
            if name is not None:
                raise DivergedError(
                    f"the {source} weights hold NaN or infinite values at {when} (first: {name}); "
                    f"training stopped and nothing was saved from them: {self.last_good_files()}. "
                    f"Try a lower Optimizer.lr.learning_rate or Global.clip_grad_norm")

    def last_good_files(self) -> str:
        """Which checkpoints on disk hold the last good state (for error messages)."""
        present = [name for name in (LATEST, BEST) if (self.context.output_dir / name).is_file()]
        return (f"{' and '.join(present)} in {self.context.output_dir} were left as they were"
                if present else "no checkpoint had been written yet")

    def save_unevaluated_best(self, epoch: int) -> None:
        """Without evaluation there is no best to choose: `best_model.pth` gets the last epoch's
        regular weights, marked as such, so the eval/export/infer commands have their file."""
        self.best = {"metric": None, "value": None, "epoch": epoch, "source": "model"}
        self.save_best(self.model, epoch, "model",
                       selected_by="last epoch (Global.eval_during_train is false)")
        self.logger.info("no evaluation during training: %s holds the weights of the last epoch "
                         "(%d), not a best by any metric", self.context.output_dir / BEST, epoch)


def _rank(value: Any) -> float:
    """Order metric values, putting a missing or NaN value last."""
    return float("-inf") if value is None or value != value else float(value)
