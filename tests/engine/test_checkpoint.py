"""Checkpoints: atomic writes, safe loading and the key report for weights that do not fit."""
import os

import numpy as np
import pytest
import torch
from torch import nn

from ppq2l.engine.checkpoint import (extract_state_dict, load_checkpoint, load_model_weights,
                                     save_checkpoint)
from ppq2l.errors import CheckpointError
from ppq2l.utils.atomic_write import OutputError, temporary_path


def small_model(out=3):
    return nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, out))


def test_round_trip_and_no_temporary_left(tmp_path):
    model = small_model()
    path = save_checkpoint({"model": model.state_dict(), "epoch": 4, "best": {"value": 1.5}},
                           tmp_path / "sub" / "latest.pth")
    assert [p.name for p in path.parent.iterdir()] == ["latest.pth"]
    state = load_checkpoint(path)
    assert state["epoch"] == 4 and state["best"] == {"value": 1.5}
    fresh = small_model()
    load_model_weights(fresh, path)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "latest.pth"
    save_checkpoint({"epoch": 1}, path)

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OutputError, match="cannot write .*latest.pth: disk full; the previous file is unchanged"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pth"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_is_said_in_words(tmp_path):
    path = tmp_path / "latest.pth"
    save_checkpoint({"epoch": 1}, path)
    temporary_path(path).symlink_to("/dev/full")  # every write to it fails with ENOSPC
    with pytest.raises(OutputError, match="no space left on device"):
        save_checkpoint({"model": small_model().state_dict()}, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pth"]


def test_truncated_file_is_a_clear_error(tmp_path):
    path = save_checkpoint({"model": small_model().state_dict()}, tmp_path / "latest.pth")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a torch file") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_missing_and_non_torch_files(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(CheckpointError, match="not a torch file"):
        load_checkpoint(tmp_path / "text.pth")


def test_arbitrary_objects_are_refused(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"model": {}, "payload": np.float64(1.0), "obj": object()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_mismatch_names_missing_unexpected_and_shapes(tmp_path):
    weights = small_model(out=7).state_dict()
    weights["extra.weight"] = torch.zeros(2)
    del weights["0.bias"]
    path = save_checkpoint({"model": weights}, tmp_path / "w.pth")
    with pytest.raises(CheckpointError) as info:
        load_model_weights(small_model(out=3), path)
    message = str(info.value)
    assert "missing keys: 0.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "2.weight (7, 5) vs model (3, 5)" in message and "2.bias (7,) vs model (3,)" in message


def test_plain_state_dict_and_state_dict_key_are_accepted():
    weights = small_model().state_dict()
    assert extract_state_dict(weights).keys() == weights.keys()
    assert extract_state_dict({"state_dict": weights, "epoch": 1}).keys() == weights.keys()
    with pytest.raises(CheckpointError, match="contains no tensors"):
        extract_state_dict({"epoch": 1})
