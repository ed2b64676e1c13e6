"""Failures inside DataLoader workers: a Ppq2lError arrives as the same clean error as without
workers, a killed worker is one sentence naming the signal and the fix, and workers ignore SIGTERM
(the main process handles it)."""
import os
import signal

import numpy as np
import pytest
import torch

from ppq2l.data import build_dataloader
from ppq2l.data.dataloader import BatchCollator, SeededDataLoader, SeededSampleDataset, SeededSampler
from ppq2l.data.loader_workers import WorkerDiedError, describe_worker_death, ignore_stop_signals
from ppq2l.errors import ConfigError, DataError

OPS = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 8}},
       {"NormalizeImage": {"scale": "1.0/255.0", "order": ""}}, {"ToCHWImage": None}]


def section(root, list_file, workers):
    return {"dataset": {"name": "MultiLabelListDataset", "image_root": str(root),
                        "cls_label_path": str(list_file), "transform_ops": OPS},
            "sampler": {"batch_size": 2, "shuffle": False},
            "loader": {"num_workers": workers}}


@pytest.fixture
def broken_list(tmp_path):
    import cv2
    cv2.imwrite(str(tmp_path / "good.png"), np.zeros((6, 6, 3), np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    list_file = tmp_path / "list.txt"
    list_file.write_text("good.png\t1,0\ngood.png\t0,1\ngood.png\t1,1\nbroken.jpg\t0,1\n")
    return tmp_path, list_file


def first_error(loader):
    with pytest.raises(DataError) as caught:
        for _ in loader:
            pass
    return caught.value


def test_worker_error_is_the_main_process_error(broken_list):
    errors = [first_error(build_dataloader(section(*broken_list, workers), "Eval", 2))
              for workers in (0, 1, 2)]
    assert {type(error) for error in errors} == {DataError}
    assert len({str(error) for error in errors}) == 1, [str(error) for error in errors]
    message = str(errors[1])
    assert message.startswith(f"image {broken_list[0] / 'broken.jpg'} (line 4 of ")
    assert "cannot decode" in message and "DataLoader worker" not in message
    assert "Traceback" not in message


class ShapeChangingDataset:
    """Images of two sizes: the collate function (in the worker) refuses the batch."""

    labels = np.zeros((4, 2), np.uint8)

    def __len__(self):
        return 4

    def get(self, index, rng=None):
        return np.zeros((3, 4 + index, 4), np.float32), np.zeros(2, np.float32)


def seeded_loader(dataset, workers, **extra):
    options = {"worker_init_fn": ignore_stop_signals} if workers else {}
    loader = SeededDataLoader(SeededSampleDataset(dataset), batch_size=2,
                              sampler=SeededSampler(len(dataset), False, 0, pad=False),
                              num_workers=workers, collate_fn=BatchCollator(None, "DataLoader.Train"),
                              **options, **extra)
    loader.where = "DataLoader.Train"
    return loader


@pytest.mark.parametrize("workers", [0, 1])
def test_collate_error_in_a_worker_is_the_clean_config_error(workers):
    with pytest.raises(ConfigError) as caught:
        next(iter(seeded_loader(ShapeChangingDataset(), workers)))
    text = str(caught.value)
    assert text.startswith("DataLoader.Train.dataset.transform_ops: samples must come out as")
    assert "DataLoader worker" not in text and "Traceback" not in text


class SignalsItselfDataset:
    """Sends `signal_number` to its own process when it runs in a worker, then returns a sample."""

    labels = np.zeros((4, 2), np.uint8)

    def __init__(self, signal_number):
        self.signal_number = signal_number

    def __len__(self):
        return 4

    def get(self, index, rng=None):
        if torch.utils.data.get_worker_info() is not None:
            os.kill(os.getpid(), self.signal_number)
        return np.full((3, 4, 4), index, np.float32), np.zeros(2, np.float32)


def test_a_killed_worker_is_one_sentence_with_the_signal_and_the_fix():
    loader = seeded_loader(SignalsItselfDataset(signal.SIGKILL), workers=2)
    with pytest.raises(WorkerDiedError) as caught:
        list(loader)
    text = str(caught.value)
    assert text.startswith("DataLoader.Train: a DataLoader worker (pid ")
    assert "was killed by signal SIGKILL, probably by the out-of-memory killer" in text
    assert "set DataLoader.Train.loader.num_workers below 2" in text and "batch_size" in text


def test_workers_ignore_stop_signals_and_keep_loading(broken_list):
    # Without ignore_stop_signals the worker dies at its first sample and the loader raises.
    batches = list(seeded_loader(SignalsItselfDataset(signal.SIGTERM), workers=1))
    assert [images[:, 0, 0, 0].tolist() for images, _ in batches] == [[0, 1], [2, 3]]
    assert build_dataloader(section(*broken_list, 1), "Train", 2).worker_init_fn is ignore_stop_signals


@pytest.mark.parametrize("text,expected", [
    ("DataLoader worker (pid 123) is killed by signal: Bus error. ",
     "(pid 123) was killed by signal SIGBUS, probably for lack of shared memory"),
    ("DataLoader worker (pid 9) exited unexpectedly with exit code 1. Details are lost",
     "(pid 9) exited unexpectedly with exit code 1, probably killed for lack of memory; "
     "set DataLoader.Eval.loader.num_workers to 0"),
])
def test_torch_worker_messages_are_translated(text, expected):
    assert expected in str(describe_worker_death(RuntimeError(text), "DataLoader.Eval", 1))


def test_the_signal_is_found_in_the_error_a_timeout_was_raised_from():
    try:
        try:
            raise RuntimeError("DataLoader worker (pid 77) is killed by signal: Killed. ")
        except RuntimeError as inner:
            raise RuntimeError("DataLoader worker (pid(s) 77) exited unexpectedly") from inner
    except RuntimeError as outer:
        died = describe_worker_death(outer, "DataLoader.Train", 4)
    assert "(pid 77) was killed by signal SIGKILL" in str(died) and "below 4" in str(died)
    assert describe_worker_death(RuntimeError("CUDA out of memory"), "DataLoader.Train", 4) is None


EXIT_SCRIPT = """
import sys
import numpy as np
from ppq2l.data.dataloader import BatchCollator, SeededDataLoader, SeededSampleDataset, SeededSampler
from ppq2l.data.loader_workers import ignore_stop_signals

class Zeros:
    labels = np.zeros((8, 2), np.uint8)
    def __len__(self):
        return 8
    def get(self, index, rng=None):
        return np.zeros((3, 4, 4), np.float32), np.zeros(2, np.float32)

loader = SeededDataLoader(SeededSampleDataset(Zeros()), batch_size=2, sampler=SeededSampler(8, False, 0),
                          num_workers=2, collate_fn=BatchCollator(None, "x"),
                          worker_init_fn=ignore_stop_signals, persistent_workers=True)
for batch in loader:
    if sys.argv[1] == "raise":
        raise ValueError("a bug")
print("done")
"""


@pytest.mark.parametrize("ending", ["normal", "raise"])
def test_a_process_with_live_workers_still_exits(ending, tmp_path):
    # multiprocessing ends leftover workers at exit with SIGTERM, which they ignore, then waits
    # for them: without the exit hook a run with persistent workers would never end.
    import subprocess
    import sys

    from conftest import REPO
    script = tmp_path / "exit_check.py"
    script.write_text(EXIT_SCRIPT)
    result = subprocess.run([sys.executable, str(script), ending], cwd=REPO, capture_output=True,
                            text=True, timeout=90, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == (0 if ending == "normal" else 1), result.stderr[-2000:]
    assert ("done" in result.stdout) == (ending == "normal")


def test_a_failure_record_crosses_the_pin_memory_thread_unchanged():
    # with pin_memory on CUDA every batch passes through torch's pin_memory(); a record that it
    # rebuilt (as it does tuples and mappings) would lose its type and never be raised
    from torch.utils.data._utils.pin_memory import pin_memory

    from ppq2l.data.loader_workers import LoadFailure
    failure = LoadFailure(DataError("image x.jpg (line 3 of list.txt): cannot decode"))
    assert pin_memory(failure) is failure
