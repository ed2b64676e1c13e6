"""The staging folder of an export: files reach the target only when the block succeeds, the model
last; a failure or a killed export leaves the target as it was."""
import os
import subprocess
import sys

import pytest

from ppq2l.export.staging import remove_stale_staging, staged_export, staging_folder
from ppq2l.utils.atomic_write import OutputError


def contents(folder):
    return {path.name: path.read_text() for path in folder.iterdir()}


def test_files_replace_the_target_only_when_the_block_succeeds(tmp_path):
    (tmp_path / "model.onnx").write_text("old model")
    (tmp_path / "inference.yml").write_text("old yml")
    with pytest.raises(ValueError):
        with staged_export(tmp_path, last=("inference.yml", "model.onnx")) as staging:
            (staging / "model.onnx").write_text("new model")
            raise ValueError("parity check failed")
    assert contents(tmp_path) == {"model.onnx": "old model", "inference.yml": "old yml"}
    with staged_export(tmp_path, last=("inference.yml", "model.onnx")) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".")
        (staging / "model.onnx").write_text("new model")
        (staging / "inference.yml").write_text("new yml")
    assert contents(tmp_path) == {"model.onnx": "new model", "inference.yml": "new yml"}


def test_a_file_the_block_did_not_write_is_refused(tmp_path):
    (tmp_path / "model.onnx").write_text("old model")
    with pytest.raises(OutputError, match="lacks inference.yml"):
        with staged_export(tmp_path, last=("inference.yml", "model.onnx")) as staging:
            (staging / "model.onnx").write_text("new model")
    assert contents(tmp_path) == {"model.onnx": "old model"}


def test_staging_of_a_killed_export_is_removed_next_time(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / f".export.tmp{int(dead.stdout)}"
    stale.mkdir()
    (stale / "model.onnx").write_text("half")
    live = staging_folder(tmp_path).with_name(f".export.tmp{os.getppid()}")  # a running process
    live.mkdir()
    assert remove_stale_staging(tmp_path) == [stale]
    assert live.is_dir() and not stale.exists()
