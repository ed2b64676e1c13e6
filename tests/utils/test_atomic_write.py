"""Atomic writes and the checks of output locations made before a run starts."""
import os
import subprocess
import sys

import pytest

from ppq2l.utils.atomic_write import (
    OutputError,
    atomic_output,
    prepare_output_dir,
    prepare_output_file,
    remove_stale_temporaries,
    temporary_path,
    write_text_atomic,
)


def test_text_is_replaced_whole_and_no_temporary_remains(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    write_text_atomic(path, "one")
    write_text_atomic(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_an_error_inside_the_block_leaves_the_old_file(tmp_path):
    path = tmp_path / "a.txt"
    write_text_atomic(path, "kept")
    with pytest.raises(ValueError):
        with atomic_output(path, "w") as handle:
            handle.write("half")
            raise ValueError("stop")
    assert path.read_text() == "kept" and sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_keep_previous_moves_the_replaced_file(tmp_path):
    path, previous = tmp_path / "latest.pth", tmp_path / "latest.prev.pth"
    write_text_atomic(path, "1")
    with atomic_output(path, "w", keep_previous=previous) as handle:
        handle.write("2")
    assert path.read_text() == "2" and previous.read_text() == "1"


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / f".latest.pth.tmp{int(dead.stdout)}"
    stale.write_bytes(b"x" * 100)
    live = temporary_path(tmp_path / "latest.pth")  # this process: still writing it
    live.write_bytes(b"y")
    user_file = tmp_path / "notes.tmp1"  # not hidden, not ours
    user_file.write_text("keep")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert live.exists() and user_file.exists() and not stale.exists()


@pytest.mark.parametrize("value", [None, "", "  "])
def test_empty_output_dir_names_the_key(value):
    with pytest.raises(OutputError, match="Global.output_dir is empty"):
        prepare_output_dir(value, "Global.output_dir")


def test_output_dir_that_is_a_file_or_under_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        prepare_output_dir(str(blocker), "Global.output_dir")
    with pytest.raises(OutputError, match=f"cannot create .*: {blocker} is a file"):
        prepare_output_dir(str(blocker / "run"), "Global.output_dir")


def test_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert prepare_output_dir("~/runs/a", "Global.output_dir") == tmp_path / "runs" / "a"
    assert (tmp_path / "runs" / "a").is_dir() and not list((tmp_path / "runs" / "a").iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused_before_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write into .*permission denied"):
            prepare_output_dir(str(locked / "run"), "Global.output_dir")
    finally:
        locked.chmod(0o700)


def test_output_file_that_is_a_folder(tmp_path):
    with pytest.raises(OutputError, match="is a folder; give the path of a file"):
        prepare_output_file(str(tmp_path), "Global.save_path")
    assert prepare_output_file(str(tmp_path / "new" / "r.jsonl"), "Global.save_path").parent.is_dir()
