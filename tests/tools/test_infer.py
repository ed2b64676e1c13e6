"""Torch inference from a checkpoint: the package's torch backend gives the model's own sigmoid
scores on the Eval preprocessing, and tools/infer.py, run as a user runs it, prints and saves the
records, draws visualisations, and exits 1 when a file failed, 2 on a config mistake."""
import json

import numpy as np
import pytest
import torch

from ppq2l.arch import build_model
from ppq2l.config import get_config, read_yaml, save_config
from ppq2l.data.transforms import build_transforms
from ppq2l.engine.checkpoint import save_checkpoint
from ppq2l.errors import CheckpointError
from ppq2l.predict import Predictor

from conftest import DEMO_CONFIG, assert_user_error, run_tool, tiny_overrides

INFER = "tools/infer.py"


@pytest.fixture(scope="module")
def setup(tiny_demo_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("infer")
    # the demo config leaves the optional Infer keys out (its inference preprocessing is the Eval
    # ops); overrides can only change present keys, so they are written out here
    raw = read_yaml(DEMO_CONFIG)
    raw["Infer"].update({"visualize": False, "save_path": None,
                         "transforms": raw["DataLoader"]["Eval"]["dataset"]["transform_ops"]})
    save_config(raw, folder / "config.yaml")
    overrides = tiny_overrides(tiny_demo_root, folder / "output")
    config = get_config(DEMO_CONFIG, overrides)
    torch.manual_seed(0)
    model = build_model(config["Arch"]).eval()
    save_checkpoint({"model": model.state_dict()}, folder / "weights.pth")  # weights only
    images = folder / "images"
    images.mkdir()
    for source in sorted((tiny_demo_root / "val2017").iterdir())[:5]:
        (images / source.name).write_bytes(source.read_bytes())
    return {"overrides": overrides + [f"Global.pretrained_model={folder / 'weights.pth'}",
                                      f"Infer.infer_imgs={images}"],
            "model": model, "config": config, "images": images, "path": folder / "config.yaml",
            "weights": folder / "weights.pth", "folder": folder}


def infer(setup, *overrides, **options):
    arguments = ["-c", setup["path"]]
    for override in [*setup["overrides"], *overrides]:
        arguments += ["-o", override]
    return run_tool(INFER, *arguments, **options)


def expected_scores(setup, files):
    compose = build_transforms(setup["config"]["DataLoader"]["Eval"]["dataset"]["transform_ops"])
    with torch.no_grad():
        return torch.sigmoid(setup["model"](torch.from_numpy(
            np.stack([compose(f.read_bytes()) for f in files])))).numpy()


def test_tool_scores_are_the_models_sigmoid_on_the_eval_preprocessing(setup, tmp_path):
    save_path = tmp_path / "records.jsonl"
    # a different Infer.transforms is reported and not used: inference preprocesses as Eval does
    result = infer(setup, "Infer.batch_size=2", "Infer.PostProcess.threshold=0.0",
                   f"Infer.save_path={save_path}", "Infer.transforms.ResizeImage.size=48")
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    files = sorted(setup["images"].iterdir())
    assert [r["file_name"] for r in records] == [str(f) for f in files]
    actual = np.array([r["scores"] for r in records])
    assert actual.shape == (5, 12)
    assert np.abs(actual - expected_scores(setup, files)).max() <= 1e-5  # 5-decimal rounding
    assert all(len(r["label_names"]) == 12 for r in records)
    assert [json.loads(line) for line in save_path.read_text().splitlines()] == records
    assert "Infer.transforms differs from DataLoader.Eval.dataset.transform_ops at op 1" in result.stderr


def test_checkpoint_with_a_config_file_predicts_through_the_api(setup):
    """A weights-only checkpoint needs its config (a YAML file or a dict); the API then gives the
    model's scores and thresholds them as the records say."""
    with pytest.raises(CheckpointError, match="carries no config.*config='CONFIG.yaml'"):
        Predictor(setup["weights"])
    files = sorted(setup["images"].iterdir())
    save_config(setup["config"], setup["folder"] / "resolved.yaml")
    predictor = Predictor(setup["weights"], config=setup["folder"] / "resolved.yaml", device="cpu",
                          batch_size=3)
    scores = predictor.scores(files)
    assert scores.shape == (5, 12) and scores.dtype == np.float32
    assert np.abs(scores - expected_scores(setup, files)).max() <= 1e-5
    for threshold in (0.5, float(np.median(scores))):
        records = Predictor(setup["weights"], config=setup["config"], threshold=threshold,
                            batch_size=3)(files)
        for record, row in zip(records, scores):
            assert record["class_ids"] == [i for i, score in enumerate(row) if score >= threshold]


def test_bad_file_gets_error_record_status_one_and_good_ones_are_drawn(setup, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted(setup["images"].iterdir())[0]
    (folder / good.name).write_bytes(good.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 nothing else")
    result = infer(setup, f"Infer.infer_imgs={folder}", "Infer.visualize=True",
                   f"Global.output_dir={tmp_path / 'out'}")
    assert result.returncode == 1, result.stderr[-3000:]
    by_name = {r["file_name"].rsplit("/", 1)[-1]: r for r in map(json.loads, result.stdout.splitlines())}
    assert "cannot decode" in by_name["broken.jpg"]["error"]
    assert "class_ids" in by_name[good.name]
    assert "1 of 2 files have no prediction" in result.stderr and "broken.jpg" in result.stderr
    drawn = list((tmp_path / "out" / "visualize").iterdir())
    assert [p.name for p in drawn] == [good.stem + ".jpg"]


def test_all_good_is_status_zero_and_missing_input_is_status_two(setup, tmp_path):
    result = infer(setup, f"Global.output_dir={tmp_path / 'good'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(result.stdout.splitlines()) == 5
    result = infer(setup, f"Infer.infer_imgs={tmp_path / 'nope'}")
    assert_user_error(result, "Infer.infer_imgs", f"{tmp_path / 'nope'} is neither a file nor a folder")
