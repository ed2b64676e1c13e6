"""Training, evaluation and inference tools against faults, run as a user runs them: re-runs into a
used folder, config mistakes on resume, divergence, signals, bad output paths, no network."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import DEMO_CONFIG, REPO, assert_user_error, run_tool, tiny_overrides

pytestmark = pytest.mark.slow  # tools run as subprocesses (seconds each)

OFFLINE = {"HF_HUB_OFFLINE": "1"}  # the hub answers at once instead of retrying for a minute


def options(*overrides):
    arguments = ["-c", DEMO_CONFIG]
    for override in overrides:
        arguments += ["-o", override]
    return arguments


def train(root, output, *extra, env=None):
    return run_tool("tools/train.py", *options(*tiny_overrides(root, output), "Global.epochs=1", *extra),
                    env=env)


@pytest.fixture(scope="module")
def finished(tiny_demo_root, tmp_path_factory):
    output = tmp_path_factory.mktemp("finished") / "run"
    result = train(tiny_demo_root, output)
    assert result.returncode == 0, result.stderr[-3000:]
    return output


def snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def test_a_rerun_into_a_finished_folder_is_refused_and_loses_nothing(tiny_demo_root, finished):
    before = snapshot(finished)
    result = train(tiny_demo_root, finished, "Optimizer.lr.learning_rate=1e-6")
    assert_user_error(result, "already holds a training run", "Global.overwrite=True",
                      f"Global.checkpoints={finished / 'latest.pth'}")
    assert snapshot(finished) == before


def test_a_config_mistake_on_resume_leaves_config_yaml(tiny_demo_root, finished):
    before = snapshot(finished)
    result = train(tiny_demo_root, finished, f"Global.checkpoints={finished / 'latest.pth'}",
                   "Global.epochs=2", "Arch.hiden_dim=8")
    assert_user_error(result, "'hiden_dim'", "Did you mean 'hidden_dim'?")
    after = snapshot(finished)
    assert after.pop("train.log").startswith(before.pop("train.log"))  # the log only grows
    assert after == before


def test_diverged_weights_stop_the_run_without_saving_them(tiny_demo_root, tmp_path):
    output = tmp_path / "run"
    result = train(tiny_demo_root, output, "Optimizer.lr.learning_rate=1e5",
                   "Global.skip_nonfinite_steps=1000")
    assert_user_error(result, "NaN or infinite", "training has diverged",
                      "no checkpoint had been written yet")
    assert not (output / "best_model.pth").exists() and not (output / "latest.pth").exists()


def test_evaluating_a_nan_checkpoint_names_it(tiny_demo_root, finished, tmp_path):
    state = torch.load(finished / "best_model.pth", weights_only=True)
    first = next(key for key, value in state["model"].items() if value.is_floating_point())
    state["model"][first] = torch.full_like(state["model"][first], float("nan"))
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    result = run_tool("tools/eval.py", *options(*tiny_overrides(tiny_demo_root, tmp_path / "eval"),
                                                f"Global.pretrained_model={broken}"))
    assert_user_error(result, f"the model of {broken} gives NaN or infinite scores",
                      "diverged or are corrupt")


def test_sigterm_saves_latest_and_the_run_resumes(tiny_demo_root, tmp_path):
    output = tmp_path / "run"
    arguments = options(*tiny_overrides(tiny_demo_root, output), "Global.epochs=40",
                        "Global.eval_during_train=False",
                        "DataLoader.Train.loader.num_workers=1")  # the workers must survive it
    environment = dict(os.environ, PYTHONPATH=str(REPO))  # this checkout, not an installed copy
    process = subprocess.Popen([sys.executable, str(REPO / "tools" / "train.py"), *map(str, arguments)],
                               cwd=REPO, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (output / "metrics.jsonl").exists():
        time.sleep(0.2)
    assert (output / "train.lock").exists()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr and "received SIGTERM" in stderr
    assert "stopped: latest.pth holds" in stderr and "Global.checkpoints=" in stderr
    assert not (output / "train.lock").exists()
    state = torch.load(output / "latest.pth", weights_only=True)
    assert 1 <= state["epoch"] < 40
    resumed = train(tiny_demo_root, output, f"Global.checkpoints={output / 'latest.pth'}",
                    f"Global.epochs={state['epoch'] + 2}", "Global.eval_during_train=False")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["epoch"] == state["epoch"] + 2


@pytest.mark.parametrize("case", ["under_file", "null"])  # the other cases: tests/utils/test_atomic_write.py
def test_bad_output_dir_is_refused_before_work(tiny_demo_root, tmp_path, case):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    value = {"file": blocker, "under_file": blocker / "run", "empty": "", "null": "null"}[case]
    result = train(tiny_demo_root, tmp_path / "unused", f"Global.output_dir={value}")
    expected = {"file": "is a file, not a folder", "under_file": f"{blocker} is a file",
                "empty": "Global.output_dir is empty", "null": "Global.output_dir is empty"}[case]
    assert_user_error(result, expected)
    assert blocker.read_text() == "a file"


def test_tilde_in_output_dir_means_home(tiny_demo_root, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    result = run_tool("tools/train.py", *options(*tiny_overrides(tiny_demo_root, "~/runs/a"),
                                                 "Global.epochs=1", "Global.eval_during_train=False"),
                      cwd=tmp_path, env={"HOME": str(home)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (home / "runs" / "a" / "best_model.pth").is_file()
    assert not (tmp_path / "~").exists()


def test_pretrained_weights_without_network_say_so(tiny_demo_root, tmp_path):
    result = train(tiny_demo_root, tmp_path / "run", "Arch.backbone.pretrained=True", env=OFFLINE)
    assert_user_error(result, "pretrained: True fetches its ImageNet weights", "network access",
                      "Arch.backbone.pretrained to its path")


def test_a_checkpoint_is_evaluated_without_fetching_backbone_weights(tiny_demo_root, finished, tmp_path):
    result = run_tool("tools/eval.py", *options(*tiny_overrides(tiny_demo_root, tmp_path / "eval"),
                                                "Arch.backbone.pretrained=True",
                                                f"Global.pretrained_model={finished / 'best_model.pth'}"),
                      env=OFFLINE)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "eval" / "eval_metrics.json").is_file()


def test_infer_prints_only_records_on_stdout(tiny_demo_root, finished, tmp_path):
    result = run_tool("tools/infer.py", *options(
        *tiny_overrides(tiny_demo_root, tmp_path / "infer"),
        f"Global.pretrained_model={finished / 'best_model.pth'}",
        f"Infer.infer_imgs={tiny_demo_root / 'val2017'}"))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 24 and all("class_ids" in json.loads(line) for line in lines)


def test_infer_save_path_is_checked_before_predicting(tiny_demo_root, finished, tmp_path):
    result = run_tool("tools/infer.py", *options(
        *tiny_overrides(tiny_demo_root, tmp_path / "infer"),
        f"Global.pretrained_model={finished / 'best_model.pth'}",
        f"Infer.infer_imgs={tiny_demo_root / 'val2017'}", f"Infer.save_path={tmp_path}"))
    assert_user_error(result, "Infer.save_path", "is a folder")
    assert result.stdout == ""


@pytest.mark.parametrize("arguments", [["--help"], ["-c", str(DEMO_CONFIG), "-o", "Global.epoch=3"],
                                       ["-c", "missing.yaml"]])
def test_help_and_config_mistakes_answer_before_torch_is_imported(arguments):
    # A user's typo must not wait for torch and timm to load (seconds on a cold disk).
    code = ("import runpy, sys\n"
            f"sys.argv = ['train.py', *{arguments!r}]\n"
            "try:\n"
            f"    runpy.run_path({str(REPO / 'tools' / 'train.py')!r}, run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('torch imported' if 'torch' in sys.modules else 'torch not imported')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip().endswith("torch not imported"), result.stdout + result.stderr
