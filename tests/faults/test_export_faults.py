"""Export, deploy and checkpoint conversion run as a user would, against broken checkpoints, broken
models and bad output paths: one clear `error:` line before any work, and a good export that a
failed one would have replaced survives byte for byte."""
import json
import shutil

import numpy as np
import pytest
import torch

from ppq2l.arch import build_model
from ppq2l.config import get_config
from ppq2l.engine.checkpoint import save_checkpoint

from conftest import DEMO_CONFIG, REPO, assert_user_error, run_tool, tiny_overrides

pytestmark = pytest.mark.slow  # tools run as subprocesses (seconds each)

EXPORT, CONVERT = "tools/export_model.py", "tools/convert_checkpoint.py"
PREDICT = "deploy/python/predict_multilabel.py"
DEPLOY_CONFIG = REPO / "deploy" / "configs" / "inference_multilabel.yaml"


def as_argv(overrides):
    return [item for override in overrides for item in ("-o", override)]


def snapshot(folder):
    """Every entry of `folder` (hidden ones too) with its bytes."""
    return {path.name: path.read_bytes() if path.is_file() else None for path in folder.iterdir()}


@pytest.fixture(scope="module")
def tiny(tiny_demo_root, tmp_path_factory):
    """A randomly initialised tiny Query2Label saved as the trainer saves it, a copy whose first
    weight is NaN, and a good export of the first."""
    folder = tmp_path_factory.mktemp("export_faults")
    overrides = tiny_overrides(tiny_demo_root, folder / "output") + [
        "Global.image_shape=[3, 64, 64]"]
    config = get_config(DEMO_CONFIG, overrides)
    torch.manual_seed(0)
    weights = build_model(config["Arch"]).state_dict()
    save_checkpoint({"model": weights, "config": config}, folder / "good.pth")
    first = next(name for name, tensor in weights.items() if tensor.is_floating_point())
    broken = {name: tensor.clone() for name, tensor in weights.items()}
    broken[first].fill_(float("nan"))
    save_checkpoint({"model": broken, "config": config}, folder / "nan.pth")
    result = run_tool(EXPORT, "-c", DEMO_CONFIG, *as_argv(overrides + [
        f"Global.pretrained_model={folder / 'good.pth'}",
        f"Global.save_inference_dir={folder / 'inference'}"]))
    assert result.returncode == 0, result.stderr[-3000:]
    return {"folder": folder, "overrides": overrides, "nan_weight": first,
            "export": folder / "inference", "images": tiny_demo_root / "val2017"}


def export(tiny, checkpoint, save_inference_dir, *extra, **options):
    return run_tool(EXPORT, "-c", DEMO_CONFIG, *as_argv(tiny["overrides"] + [
        f"Global.pretrained_model={tiny['folder'] / checkpoint}",
        f"Global.save_inference_dir={save_inference_dir}", *extra]), **options)


def predict(*overrides):
    return run_tool(PREDICT, "-c", DEPLOY_CONFIG, *as_argv(overrides), timeout=120)


def test_nan_checkpoint_exported_over_a_good_export_leaves_it_untouched(tiny, tmp_path):
    target = tmp_path / "inference"
    shutil.copytree(tiny["export"], target)
    before = snapshot(target)
    result = export(tiny, "nan.pth", target)
    assert_user_error(result, str(tiny["folder"] / "nan.pth"), tiny["nan_weight"],
                      "the model produces NaN/Inf scores",
                      f"the export already in {target} is unchanged")
    assert snapshot(target) == before  # no file replaced, no staging folder left


@pytest.mark.parametrize("case", ["file", "under_file", "empty"])
def test_bad_save_inference_dir_is_refused_before_work(tiny, tmp_path, case):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    value = {"file": blocker, "under_file": blocker / "inference", "empty": ""}[case]
    fragment = {"file": f"{blocker} is a file, not a folder",
                "under_file": f"{blocker} is a file", "empty": "is empty"}[case]
    result = export(tiny, "good.pth", value, f"Global.output_dir={tmp_path / 'run'}")
    assert_user_error(result, "Global.save_inference_dir", fragment)
    assert not (tmp_path / "run").exists()  # refused before the run set anything up


def test_tilde_in_save_inference_dir_means_home(tiny, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    result = export(tiny, "good.pth", "~/inference", env={"HOME": str(home)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(snapshot(home / "inference")) == ["inference.yml", "model.onnx"]
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("case", ["folder", "under_file"])
def test_deploy_save_path_is_refused_before_any_prediction(tiny, tmp_path, case):
    (tmp_path / "blocker").write_text("not a folder")
    value = {"folder": tmp_path, "under_file": tmp_path / "blocker" / "records.jsonl"}[case]
    fragment = {"folder": f"{tmp_path} is a folder", "under_file": "blocker is a file"}[case]
    result = predict(f"Global.infer_imgs={tiny['images']}",
                     f"Global.inference_model_dir={tiny['export']}", f"Global.save_path={value}")
    assert_user_error(result, "Global.save_path", fragment)
    assert result.stdout == ""  # not a single record was computed


def test_deploy_model_with_nan_scores_gives_error_records(tiny, tmp_path):
    """A model with NaN weights (here: an initializer of the good export set to NaN) thresholds
    to empty predictions that look valid; each image must get an error record and exit 1."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(tiny["export"] / "model.onnx"))
    weight = next(init for init in model.graph.initializer
                  if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) == 4)
    weight.CopyFrom(numpy_helper.from_array(
        np.full(numpy_helper.to_array(weight).shape, np.nan, np.float32), weight.name))
    (tmp_path / "broken").mkdir()
    onnx.save(model, str(tmp_path / "broken" / "model.onnx"))
    result = predict(f"Global.infer_imgs={tiny['images']}", "Global.batch_size=8",
                     f"Global.inference_model_dir={tmp_path / 'broken'}")
    assert result.returncode == 1, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(list(tiny["images"].iterdir())) == 24
    assert all("non-finite scores" in record.get("error", "") for record in records), records[:2]
    assert "24 of 24 files have no prediction" in result.stderr
    assert "Traceback" not in result.stderr


def test_convert_output_folder_is_refused_before_conversion(tiny, tmp_path):
    # the demo config without the tiny overrides does not fit these weights: an error about the
    # fit would mean the output was checked only after the conversion work
    result = run_tool(CONVERT, "--from", "q2l", "--input", tiny["folder"] / "good.pth",
                      "-c", DEMO_CONFIG, "--output", tmp_path)
    assert_user_error(result, "--output", f"{tmp_path} is a folder")


def test_convert_input_folder_is_called_a_folder(tiny, tmp_path):
    result = run_tool(CONVERT, "--from", "q2l", "--input", tiny["folder"], "-c", DEMO_CONFIG,
                      "--output", tmp_path / "converted.pth")
    assert_user_error(result, f"{tiny['folder']} is a folder, not a checkpoint file")
    assert not (tmp_path / "converted.pth").exists()
