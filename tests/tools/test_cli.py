"""The command-line tools: user mistakes end with one `error:` line and status 2, no traceback."""

import pytest

from conftest import DEMO_CONFIG
from conftest import run_tool as run_repo_tool


def run_tool(script, *args):
    return run_repo_tool(f"tools/{script}", *args)


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_config_typo_is_one_clear_line(script):
    result = run_tool(script, "-c", DEMO_CONFIG, "-o", "Global.epoch=3")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: override 'Global.epoch=3'" in result.stderr
    assert "Did you mean 'epochs'" in result.stderr


def test_eval_without_weights_says_what_to_set():
    result = run_tool("eval.py", "-c", DEMO_CONFIG)
    assert result.returncode == 2
    assert "Global.pretrained_model" in result.stderr and "Traceback" not in result.stderr


def test_missing_weights_file_names_it(tmp_path):
    result = run_tool("eval.py", "-c", DEMO_CONFIG, "-o", f"Global.output_dir={tmp_path}",
                      "-o", f"Global.pretrained_model={tmp_path / 'missing.pth'}")
    assert result.returncode == 2
    assert f"checkpoint not found: {tmp_path / 'missing.pth'}" in result.stderr
