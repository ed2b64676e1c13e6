"""tools/infer.py: batched torch inference gives the model's own sigmoid scores, saves JSON lines,
draws visualisations, and reports unreadable files with exit status 1."""
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

from conftest import DEMO_CONFIG, REPO, tiny_overrides
from ppq2l.arch import build_model
from ppq2l.config import get_config, read_yaml, save_config
from ppq2l.data.transforms import build_transforms
from ppq2l.engine.checkpoint import save_checkpoint
from ppq2l.export.onnx_export import inference_transforms


@pytest.fixture(scope="module")
def infer_tool():
    spec = importlib.util.spec_from_file_location("tool_infer_t", REPO / "tools" / "infer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["tool_infer_t"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(tiny_demo_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("infer")
    # the demo config leaves the optional Infer keys out; overrides can only change present keys
    raw = read_yaml(DEMO_CONFIG)
    raw["Infer"].update({"visualize": False, "save_path": None})
    save_config(raw, folder / "config.yaml")
    overrides = tiny_overrides(tiny_demo_root, folder / "output")
    config = get_config(DEMO_CONFIG, overrides)
    torch.manual_seed(0)
    model = build_model(config["Arch"]).eval()
    save_checkpoint({"model": model.state_dict()}, folder / "weights.pth")
    images = folder / "images"
    images.mkdir()
    for source in sorted((tiny_demo_root / "val2017").iterdir())[:5]:
        (images / source.name).write_bytes(source.read_bytes())
    return {"overrides": overrides + [f"Global.pretrained_model={folder / 'weights.pth'}",
                                      f"Infer.infer_imgs={images}"],
            "model": model, "config": config, "images": images, "path": folder / "config.yaml"}


def argv(setup, overrides):
    return ["-c", str(setup["path"]), *[item for o in overrides for item in ("-o", o)]]


def test_scores_are_the_models_sigmoid_in_batches(infer_tool, setup, tmp_path):
    save_path = tmp_path / "records.jsonl"
    records = infer_tool.main(argv(setup, setup["overrides"] + [
        "Infer.batch_size=2", "Infer.PostProcess.threshold=0.0", f"Infer.save_path={save_path}"]))
    files = sorted(setup["images"].iterdir())
    assert [r["file_name"] for r in records] == [str(f) for f in files]
    compose = build_transforms(inference_transforms(setup["config"]))
    with torch.no_grad():
        expected = torch.sigmoid(setup["model"](torch.from_numpy(
            np.stack([compose(f.read_bytes()) for f in files])))).numpy()
    actual = np.array([r["scores"] for r in records])
    assert actual.shape == (5, 12)
    assert np.abs(actual - expected).max() <= 1e-5  # 5-decimal rounding
    assert all(len(r["label_names"]) == 12 for r in records)
    saved = [json.loads(line) for line in save_path.read_text().splitlines()]
    assert saved == records


def test_threshold_selects_labels(infer_tool, setup):
    records = infer_tool.main(argv(setup, setup["overrides"] + ["Infer.PostProcess.threshold=0.5"]))
    for record in records:
        assert all(score >= 0.5 for score in record["scores"])
        assert record["class_ids"] == sorted(record["class_ids"])


def test_bad_file_gets_error_record_and_status_one(infer_tool, setup, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted(setup["images"].iterdir())[0]
    (folder / good.name).write_bytes(good.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 nothing else")
    overrides = setup["overrides"] + [f"Infer.infer_imgs={folder}", "Infer.visualize=True",
                                      f"Global.output_dir={tmp_path / 'out'}"]
    assert infer_tool.cli(argv(setup, overrides)) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    by_name = {r["file_name"].rsplit("/", 1)[-1]: r for r in lines}
    assert "cannot decode" in by_name["broken.jpg"]["error"]
    assert "class_ids" in by_name[good.name]
    drawn = list((tmp_path / "out" / "visualize").iterdir())
    assert [p.name for p in drawn] == [good.stem + ".jpg"]


def test_all_good_is_status_zero_and_missing_input_is_status_two(infer_tool, setup, tmp_path):
    assert infer_tool.cli(argv(setup, setup["overrides"])) == 0
    assert infer_tool.cli(argv(setup, setup["overrides"] + [f"Infer.infer_imgs={tmp_path / 'nope'}"])) == 2
