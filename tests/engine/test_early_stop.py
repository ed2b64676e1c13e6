"""Where training ends: Global.stop_epoch stops part way through the full schedule (the official
ASL loop's Stop_epoch), and early_stop_rule query2label stops where the official Query2Label
main_mlc.py loop does, on any sequence of regular and EMA results."""
import json

import numpy as np
import pytest
import torch

from ppq2l.engine import Trainer
from ppq2l.engine.early_stop import EarlyStop
from ppq2l.errors import ConfigError


def official_query2label_stop(regular, ema, patience=8):
    """The 0-based epoch at which main_mlc.py's loop breaks (--early-stop), or None: a transcription
    of its bookkeeping from the facts (best over max(regular, EMA); best regular epoch; best EMA)."""
    best_map, best_epoch, best_regular_map, best_regular_epoch, best_ema_map = 0, -1, 0, -1, 0
    ema_history = []
    for epoch, (map_regular, map_ema) in enumerate(zip(regular, ema)):
        ema_history.append(map_ema)
        if map_regular > best_regular_map:
            best_regular_map, best_regular_epoch = map_regular, epoch
        best_ema_map = max(best_ema_map, map_ema)
        if max(map_regular, map_ema) > best_map:
            best_map, best_epoch = max(map_regular, map_ema), epoch
        if best_epoch >= 0 and epoch - max(best_epoch, best_regular_epoch) > patience:
            if len(ema_history) > 1 and ema_history[-1] < best_ema_map:
                return epoch
    return None


def ppq2l_stop(rule, regular, ema, patience=8):
    """The 1-based epoch after which ppq2l stops, fed the same results the way the trainer is."""
    stop, best = EarlyStop(rule, patience, has_ema=True), {"value": None, "epoch": None}
    for epoch, (map_regular, map_ema) in enumerate(zip(regular, ema), start=1):
        EarlyStop.record(best, epoch, {"model": map_regular, "ema": map_ema})
        value = max(map_regular, map_ema)
        if best["value"] is None or value > best["value"]:
            best.update(value=value, epoch=epoch)
        if stop.should_stop(epoch, best):
            return epoch
    return None


def curves(seed, epochs=40):
    """Noisy rising-then-flat mAP curves for regular and EMA weights, with ties and plateaus."""
    rng = np.random.default_rng(seed)
    rise = np.minimum(np.arange(epochs), rng.integers(3, 30)) * rng.uniform(0.5, 2.0)
    regular = np.round(50 + rise + rng.normal(0, rng.uniform(0.1, 2.0), epochs), 1)
    ema = np.round(50 + rise + rng.normal(0.3, rng.uniform(0.1, 1.0), epochs), 1)
    return regular.tolist(), ema.tolist()


def test_the_query2label_rule_stops_where_the_official_loop_does():
    stopped = 0
    for seed in range(300):
        regular, ema = curves(seed)
        official = official_query2label_stop(regular, ema)
        ours = ppq2l_stop("query2label", regular, ema)
        assert ours == (None if official is None else official + 1), seed
        stopped += official is not None
    assert 30 < stopped < 270  # the curves exercise both outcomes


def test_the_rules_differ_where_the_official_one_waits():
    # best at epoch 1, then flat: plateau stops after 8 further epochs, the official rule needs
    # more than 8 and an EMA result below the best EMA one
    regular, ema = [60.0] + [59.0] * 15, [61.0] + [61.0] * 15
    assert ppq2l_stop("plateau", regular, ema) == 9
    assert ppq2l_stop("query2label", regular, ema) is None  # EMA never falls below its best
    ema = [61.0] + [60.5] * 15
    assert ppq2l_stop("query2label", regular, ema) == 10


def test_the_query2label_rule_needs_ema_and_a_known_rule():
    with pytest.raises(ConfigError, match="query2label compares EMA results, but the config has no EMA"):
        EarlyStop("query2label", 8, has_ema=False)
    EarlyStop("query2label", 0, has_ema=False)  # off: nothing to compare


def test_stop_epoch_ends_training_part_way_through_the_full_schedule(tiny_config, tmp_path):
    tiny_config["Global"].update(epochs=4, stop_epoch=2)
    Trainer(tiny_config).train()
    output = tmp_path / "output"
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == [1, 2] and "model_mAP" in records[-1]
    # the learning rate follows the 4-epoch OneCycle: after 2 of 4 epochs it is still high
    reference = torch.optim.lr_scheduler.OneCycleLR(
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)]), max_lr=tiny_config["Optimizer"]["lr"]
        ["learning_rate"], total_steps=4 * 3, pct_start=tiny_config["Optimizer"]["lr"]["pct_start"])
    for _ in range(2 * 3):
        reference.optimizer.step()
        reference.step()
    assert records[-1]["lr"] == pytest.approx(reference.get_last_lr()[0], rel=1e-6)
    tiny_config["Global"]["checkpoints"] = str(output / "latest.pth")
    with pytest.raises(ConfigError, match="has trained 2 epochs and Global.stop_epoch is 2: nothing left"):
        Trainer(tiny_config)


def test_stop_epoch_past_the_schedule_is_refused(tiny_config):
    tiny_config["Global"].update(epochs=2, stop_epoch=3)
    with pytest.raises(ConfigError, match=r"Global\.stop_epoch must be an integer from 1 to 2 \(the last "
                                          r"epoch trained of the 2-epoch schedule; 0: all of them\), got 3"):
        Trainer(tiny_config)
