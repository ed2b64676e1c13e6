"""Training end to end on a tiny dataset: the loss falls, checkpoints are written, a resumed run
continues from the saved epoch, and evaluation writes the metric file."""
import json

import numpy as np
import pytest
import torch

from ppq2l.engine import Trainer, evaluate_from_config
from ppq2l.engine.checkpoint import load_checkpoint
from ppq2l.errors import CheckpointError, ConfigError


def read_metrics(output_dir):
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_epochs_lower_the_loss_and_write_checkpoints(tiny_config, tmp_path):
    tiny_config["Global"]["epochs"] = 4
    tiny_config["Optimizer"]["lr"]["learning_rate"] = 3e-3
    best = Trainer(tiny_config).train()
    output = tmp_path / "output"
    records = read_metrics(output)
    assert [record["epoch"] for record in records] == [1, 2, 3, 4]
    assert records[-1]["loss"] < records[0]["loss"]
    assert all("model_mAP" in record and "ema_mAP" in record for record in records)
    assert all(np.isfinite(record["model_loss"]) and np.isfinite(record["ema_loss"]) for record in records)
    latest = load_checkpoint(output / "latest.pth")
    assert latest["epoch"] == 4 and latest["global_step"] == 4 * 3  # 48 images / batch 16
    assert set(latest) >= {"model", "ema", "optimizer", "lr_scheduler", "scaler", "best", "config"}
    best_state = load_checkpoint(output / "best_model.pth")
    assert best_state["epoch"] == best["epoch"] and best_state["source"] in ("model", "ema")
    assert best["value"] == pytest.approx(max(max(r["model_mAP"], r["ema_mAP"]) for r in records))
    assert (output / "config.yaml").is_file() and (output / "train.log").is_file()


def test_resume_continues_from_the_saved_epoch(tiny_config, tmp_path, monkeypatch):
    tiny_config["Global"]["epochs"] = 2
    original = Trainer.train_one_epoch

    def crash_in_second_epoch(self, epoch, *args):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, epoch, *args)

    monkeypatch.setattr(Trainer, "train_one_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_config).train()
    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    output = tmp_path / "output"
    first = load_checkpoint(output / "latest.pth")
    assert first["epoch"] == 1
    tiny_config["Global"]["checkpoints"] = str(output / "latest.pth")
    trainer = Trainer(tiny_config)
    assert trainer.start_epoch == 2 and trainer.global_step == first["global_step"]
    for key, value in first["model"].items():
        assert torch.equal(trainer.model.state_dict()[key], value)
    assert trainer.best["value"] == first["best"]["value"]
    assert trainer.lr_scheduler.last_epoch == first["global_step"]
    trainer.train()
    records = read_metrics(output)
    assert [record["epoch"] for record in records] == [1, 2]
    assert load_checkpoint(output / "latest.pth")["global_step"] == 2 * first["global_step"]


def test_resume_from_weights_only_file_is_refused(tiny_config, tmp_path):
    tiny_config["Global"]["epochs"] = 1
    Trainer(tiny_config).train()
    tiny_config["Global"]["checkpoints"] = str(tmp_path / "output" / "best_model.pth")
    with pytest.raises(CheckpointError, match="cannot resume training"):
        Trainer(tiny_config)


def test_checkpoint_of_another_architecture_is_a_clear_error(tiny_config, tmp_path):
    tiny_config["Global"]["epochs"] = 1
    Trainer(tiny_config).train()
    tiny_config["Arch"]["class_num"] = 5
    tiny_config["Global"]["pretrained_model"] = str(tmp_path / "output" / "best_model.pth")
    tiny_config["Global"]["output_dir"] = str(tmp_path / "fine_tuned")
    with pytest.raises((CheckpointError, ConfigError)) as info:
        Trainer(tiny_config)
    assert "class_num" in str(info.value) or "shape" in str(info.value)


def test_evaluation_writes_the_metric_file(tiny_config, tmp_path):
    tiny_config["Global"]["epochs"] = 1
    Trainer(tiny_config).train()
    tiny_config["Global"]["pretrained_model"] = str(tmp_path / "output" / "best_model.pth")
    results = evaluate_from_config(tiny_config)
    saved = json.loads((tmp_path / "output" / "eval_metrics.json").read_text())
    assert saved["num_images"] == 24
    assert saved["mAP"] == pytest.approx(results["mAP"])
    assert len(saved["per_class_AP"]) == 12
    for key in ("CP", "CR", "CF1", "OP", "OR", "OF1", "CP_top3", "OF1_top3"):
        assert 0.0 <= saved[key] <= 100.0
    best = load_checkpoint(tmp_path / "output" / "best_model.pth")
    assert saved["mAP"] == pytest.approx(best["metrics"]["mAP"], abs=1e-6)
    assert saved["loss"] == pytest.approx(eval_loss_of_all_logits(tiny_config, best["model"]), rel=1e-5)
    assert saved["loss"] == pytest.approx(best["metrics"]["loss"], rel=1e-6)


def eval_loss_of_all_logits(config, weights):
    """The Loss.Eval loss of the logits of every evaluation image at once (the demo config's
    losses are means, so this is what batch-size weighting over the batches must give)."""
    from ppq2l.arch import build_model
    from ppq2l.data import build_dataloader
    from ppq2l.data.device_normalize import to_model_input
    from ppq2l.loss import build_loss

    model = build_model(config["Arch"])
    model.load_state_dict(weights)
    loader = build_dataloader(config["DataLoader"]["Eval"], "Eval", config["Arch"]["class_num"])
    batches = list(loader)
    assert len({len(images) for images, _ in batches}) > 1  # unequal batches: weighting matters
    with torch.no_grad():
        logits = torch.cat([model.eval()(to_model_input(images, loader, torch.device("cpu")))
                            for images, _ in batches])
    targets = torch.cat([labels for _, labels in batches])
    return build_loss(config["Loss"]["Eval"], where="Loss.Eval")(logits, targets)["loss"].item()


def test_bfloat16_autocast_trains_on_cpu_and_float16_falls_back_with_a_warning(tiny_config, caplog):
    tiny_config["Global"]["epochs"] = 1
    tiny_config["Global"]["clip_grad_norm"] = 1.0
    tiny_config["AMP"] = {"dtype": "bfloat16", "init_scale": 65536.0, "use_dynamic_loss_scaling": True}
    trainer = Trainer(tiny_config)
    assert trainer.context.precision.dtype is torch.bfloat16
    stats = trainer.train_one_epoch(1)
    assert np.isfinite(stats["loss"])
    tiny_config["AMP"]["dtype"] = "float16"
    trainer = Trainer(tiny_config)
    assert trainer.context.precision.dtype is None and not trainer.scaler.is_enabled()


def test_early_stop_ends_the_run_when_the_metric_stops_improving(tiny_config, tmp_path, monkeypatch):
    tiny_config["Global"]["epochs"] = 6
    tiny_config["Global"]["early_stop_patience"] = 2
    flat = iter([{"mAP": 50.0}, {"mAP": 60.0}] + [{"mAP": 55.0}] * 20)  # best at epoch 1 (EMA)
    monkeypatch.setattr("ppq2l.engine.trainer.compute_metrics", lambda *args: dict(next(flat)))
    best = Trainer(tiny_config).train()
    epochs = [record["epoch"] for record in read_metrics(tmp_path / "output")]
    assert epochs == [1, 2, 3]
    # (the record also keeps each source's best, which the query2label rule reads)
    assert {key: best[key] for key in ("metric", "value", "epoch", "source")} == {
        "metric": "mAP", "value": 60.0, "epoch": 1, "source": "ema"}


def test_non_finite_loss_stops_with_epoch_and_step_and_keeps_the_checkpoint(tiny_config, tmp_path):
    tiny_config["Global"]["epochs"] = 2
    trainer = Trainer(tiny_config)
    trainer.train_one_epoch(1)
    from ppq2l.engine.checkpoint import save_checkpoint
    save_checkpoint(trainer.checkpoint_state(1), tmp_path / "output" / "latest.pth")
    original = trainer.loss_fn.forward
    trainer.loss_fn.forward = lambda logits, targets: {"loss": original(logits, targets)["loss"] * float("nan")}
    from ppq2l.engine.trainer import NonFiniteLossError
    with pytest.raises(NonFiniteLossError, match="epoch 2, step 1"):
        trainer.train_one_epoch(2)
    assert load_checkpoint(tmp_path / "output" / "latest.pth")["epoch"] == 1


def test_skip_nonfinite_steps_skips_up_to_the_limit_and_counts_them(tiny_config, tmp_path):
    tiny_config["Global"]["skip_nonfinite_steps"] = 1
    tiny_config["Global"]["eval_during_train"] = False
    trainer = Trainer(tiny_config)
    original, calls = trainer.loss_fn.forward, iter(range(100))

    def nan_on_second_and_fifth(logits, targets):
        loss = original(logits, targets)["loss"]
        return {"loss": loss * float("nan") if next(calls) in (1, 4) else loss}

    trainer.loss_fn.forward = nan_on_second_and_fifth
    trainer.train_loader.set_epoch(1)
    stats = trainer.train_one_epoch(1)
    assert stats["skipped_nonfinite"] == 1 and trainer.global_step == 2  # 3 batches, 1 skipped
    from ppq2l.engine.trainer import NonFiniteLossError
    trainer.train_loader.set_epoch(2)
    with pytest.raises(NonFiniteLossError, match="epoch 2, step 2"):
        trainer.train_one_epoch(2)


def test_use_tensorboard_without_the_package_is_a_clear_config_error(tiny_config, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    tiny_config["Global"]["use_tensorboard"] = True
    with pytest.raises(ConfigError, match="Global.use_tensorboard.*pip install tensorboard"):
        Trainer(tiny_config)


def test_compile_wraps_only_the_training_module(tiny_config):
    """Global.compile compiles what the training step calls, while checkpoints and EMA keep the
    plain module, so a saved state dict has the same keys with or without compiling."""
    plain_keys = set(Trainer(tiny_config).model.state_dict())
    tiny_config["Global"]["compile"] = True
    trainer = Trainer(tiny_config)
    assert isinstance(trainer.train_model, torch._dynamo.eval_frame.OptimizedModule)
    assert trainer.train_model._orig_mod is trainer.model
    assert set(trainer.model.state_dict()) == plain_keys
    assert not any(key.startswith("_orig_mod.") for key in plain_keys)


def test_normalize_on_device_trains_and_evaluates_exactly_like_worker_normalisation(tiny_config, tmp_path):
    # The uint8 batches are normalised after the transfer with the op's own arithmetic, so the
    # same seed gives the same weights and metrics to the last bit.
    tiny_config["Global"]["epochs"] = 1
    runs = []
    for name, on_device in (("plain", False), ("on_device", True)):
        config = json.loads(json.dumps(tiny_config))
        config["Global"]["output_dir"] = str(tmp_path / name)
        for split in ("Train", "Eval"):
            config["DataLoader"][split]["loader"]["normalize_on_device"] = on_device
        Trainer(config).train()
        runs.append((load_checkpoint(tmp_path / name / "latest.pth"), read_metrics(tmp_path / name)))
    (plain, plain_records), (on_device, device_records) = runs
    assert plain["model"].keys() == on_device["model"].keys()
    for key, value in plain["model"].items():
        assert torch.equal(value, on_device["model"][key]), key
    for record, other in zip(plain_records, device_records):
        assert record["loss"] == other["loss"] and record["model_mAP"] == other["model_mAP"]


def test_a_worker_death_reported_outside_the_loader_is_one_sentence(tiny_config, monkeypatch):
    # torch's SIGCHLD handler can raise this anywhere in the step, not only in the loader
    from ppq2l.data.loader_workers import WorkerDiedError

    def die(self):
        raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")

    monkeypatch.setattr(Trainer, "run_epochs", die)
    with pytest.raises(WorkerDiedError, match="DataLoader.Train: a DataLoader worker .pid 4242. was "
                                              "killed by signal SIGKILL, probably by the out-of-memory"):
        Trainer(tiny_config).train()
