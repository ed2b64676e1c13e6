"""The one weights module: atomic writes, the safe reader, the unwrapping of every file layout
and the one report for weights that do not fit."""
import os

import numpy as np
import pytest
import torch
from torch import nn

from ppq2l.engine.checkpoint import (
    KEYS_SHOWN,
    extract_state_dict,
    is_batchnorm_counter,
    load_checkpoint,
    load_model_weights,
    load_weights,
    mismatch_report,
    read_state_dict,
    read_weight_file,
    save_checkpoint,
)
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


def test_mismatch_names_missing_unexpected_and_shapes_with_counts(tmp_path):
    weights = small_model(out=7).state_dict()
    weights["extra.weight"] = torch.zeros(2)
    del weights["0.bias"]
    path = save_checkpoint({"model": weights}, tmp_path / "w.pth")
    with pytest.raises(CheckpointError) as info:
        load_model_weights(small_model(out=3), path)
    message = str(info.value)
    assert message.startswith(f"{path} does not fit the model built from the config (check Arch")
    assert "\n" not in message  # one error line
    assert "missing (1): 0.bias; unexpected (1): extra.weight; shape mismatch (2): " in message
    assert "2.weight (7, 5) vs model (3, 5)" in message and "2.bias (7,) vs model (3,)" in message


def test_report_lists_the_first_keys_and_counts_all():
    expected = {f"layer{index}.weight": torch.zeros(1) for index in range(KEYS_SHOWN + 5)}
    report = mismatch_report(expected, {})
    shown = ", ".join(f"layer{index}.weight" for index in range(KEYS_SHOWN))
    assert report == f"missing ({KEYS_SHOWN + 5}): {shown}, ..."
    assert mismatch_report(expected, dict(expected)) == ""


def test_plain_state_dict_and_state_dict_key_are_accepted():
    weights = small_model().state_dict()
    assert extract_state_dict(weights).keys() == weights.keys()
    assert extract_state_dict({"state_dict": weights, "epoch": 1}).keys() == weights.keys()
    with pytest.raises(CheckpointError, match="contains no tensors"):
        extract_state_dict({"epoch": 1})


def test_a_state_dict_nested_in_several_containers_is_unwrapped():
    weights = small_model().state_dict()
    ema = {"module": weights, "updates": 12}  # how ModelEMA saves itself
    assert extract_state_dict({"model": ema, "epoch": 1}).keys() == weights.keys()
    assert extract_state_dict({"state_dict": {"module": weights}}).keys() == weights.keys()


@pytest.mark.parametrize("layout", ["bare", "model", "state_dict", "module.", "_orig_mod.",
                                    "compiled DDP"])
def test_the_reader_unwraps_every_layout(tmp_path, layout):
    weights = small_model().state_dict()
    prefix = {"module.": "module.", "_orig_mod.": "_orig_mod.",
              "compiled DDP": "_orig_mod.module."}.get(layout, "")
    stored = {prefix + key: value for key, value in weights.items()}
    content = {layout: stored, "epoch": 3} if layout in ("model", "state_dict") else stored
    torch.save(content, tmp_path / "w.pth")
    read = read_state_dict(tmp_path / "w.pth")
    assert list(read) == list(weights)
    assert all(torch.equal(read[key], weights[key]) for key in weights)
    fresh = small_model()
    load_model_weights(fresh, tmp_path / "w.pth")  # the engine's loader unwraps them too
    assert torch.equal(fresh.state_dict()["2.weight"], weights["2.weight"])


def test_a_prefix_only_some_keys_carry_is_part_of_the_names(tmp_path):
    weights = {"module.weight": torch.ones(1), "bias": torch.zeros(1)}
    torch.save(weights, tmp_path / "w.pth")
    assert list(read_state_dict(tmp_path / "w.pth")) == ["module.weight", "bias"]


class RunsCode:
    """A pickle payload: unpickling it would call os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_runs_code_is_refused_in_our_words(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": small_model().state_dict(), "payload": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"cannot read checkpoint {path}: it holds Python objects that a "
                              f"weights-only load refuses (")
    assert "system" in message and "without running code" in message
    assert "weights_only=False" not in message and "safe_globals" not in message
    assert not marker.exists()


def test_a_folder_is_named_as_a_folder_with_the_files_in_it(tmp_path):
    save_checkpoint({"epoch": 1}, tmp_path / "latest.pth")
    save_checkpoint({"epoch": 1}, tmp_path / "best_model.pth")
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(CheckpointError) as info:
        read_weight_file(tmp_path, "backbone weight file")
    assert str(info.value) == (f"backbone weight file {tmp_path} is a folder, not a checkpoint "
                               f"file; give the path of a file in it (it holds best_model.pth, "
                               f"latest.pth)")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"empty is a folder, .*it holds no \.pth/"):
        load_checkpoint(empty)


def test_a_truncated_file_names_the_file_and_the_previous_one(tmp_path):
    path = save_checkpoint({"model": small_model().state_dict()}, tmp_path / "latest.pth")
    save_checkpoint({"epoch": 2}, path, keep_previous=True)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path}: it is truncated.*"
                                              f"the checkpoint before it is .*latest.prev.pth"):
        load_checkpoint(path)


def test_a_file_holding_no_dict_is_refused(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(CheckpointError, match="tensor.pth holds a Tensor, expected a dict"):
        read_state_dict(tmp_path / "tensor.pth", "backbone weight file")


def test_foreign_keys_are_dropped_and_optional_ones_kept_only_as_the_caller_says():
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5))
    weights = {key: torch.full_like(value, 2) for key, value in model.state_dict().items()
               if not is_batchnorm_counter(key)}
    weights["fc.weight"] = torch.zeros(3, 5)  # a classifier the headless model lacks
    with pytest.raises(CheckpointError, match=r"missing \(1\): 1.num_batches_tracked; "
                                              r"unexpected \(1\): fc.weight"):
        load_weights(model, weights, source="w.pth")
    classifier = lambda key: key.startswith("fc.")  # noqa: E731
    load_weights(model, weights, source="w.pth", foreign=classifier, optional=is_batchnorm_counter)
    assert torch.equal(model[0].weight, torch.full((5, 4), 2.0))
    assert int(model[1].num_batches_tracked) == 0  # the model's own counter, kept
    del weights["0.bias"]  # an optional filter never hides a missing weight
    with pytest.raises(CheckpointError, match=r"w.pth does not fit backbone 'x': missing \(1\): "
                                              r"0.bias$"):
        load_weights(model, weights, source="w.pth", target="backbone 'x'", foreign=classifier,
                     optional=is_batchnorm_counter)
