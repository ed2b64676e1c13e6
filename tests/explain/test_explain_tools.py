"""Per-label maps through the tools, run as a user runs them: tools/infer.py writes overlays and
the raw maps, the exporter adds an `attention` output that matches torch, the torch-free deploy
predictor renders the same overlays from it, and asking a model without maps says how to get
them."""
import json

import numpy as np
import onnx
import pytest
import torch

from ppq2l.arch import build_model
from ppq2l.commands.export import main as export_main
from ppq2l.config import get_config
from ppq2l.data.transforms import build_transforms
from ppq2l.engine.checkpoint import save_checkpoint
from ppq2l.errors import ConfigError
from ppq2l.explain.maps import explain
from ppq2l.export.metadata import read_inference_yml
from ppq2l.predict import Predictor

from conftest import DEMO_CONFIG, REPO, assert_user_error, run_tool, tiny_overrides

pytestmark = pytest.mark.slow
DEPLOY = "deploy/python/predict_multilabel.py"
DEPLOY_CONFIG = REPO / "deploy" / "configs" / "inference_multilabel.yaml"
ML_DECODER = ("Arch={name: MLDecoder, class_num: 12, num_of_groups: 5, decoder_embedding: 32, "
              "nheads: 2, dim_feedforward: 64, backbone: {name: resnet10t, pretrained: false, "
              "channels: [8, 16, 32, 64]}}")


def as_argv(overrides):
    return [item for override in overrides for item in ("-o", override)]


@pytest.fixture(scope="module")
def setup(tiny_demo_root, tmp_path_factory):
    """A tiny Query2Label checkpoint (with its config), exported with and without maps, and
    three demo images."""
    folder = tmp_path_factory.mktemp("explain_tools")
    overrides = tiny_overrides(tiny_demo_root, folder / "output") + ["Global.image_shape=[3, 64, 64]"]
    config = get_config(DEMO_CONFIG, overrides)
    torch.manual_seed(0)
    model = build_model(config["Arch"]).eval()
    checkpoint = folder / "best_model.pth"
    save_checkpoint({"model": model.state_dict(), "config": config}, checkpoint)
    overrides.append(f"Global.pretrained_model={checkpoint}")
    summaries = {}
    for name, extra in (("with", ["Global.export_attention=True"]), ("without", [])):
        summaries[name] = export_main(["-c", str(DEMO_CONFIG), *as_argv(
            overrides + [f"Global.save_inference_dir={folder / name}", *extra])])
    images = folder / "images"
    images.mkdir()
    for source in sorted((tiny_demo_root / "val2017").iterdir())[:3]:
        (images / source.name).write_bytes(source.read_bytes())
    return {"folder": folder, "overrides": overrides, "model": model, "config": config,
            "images": images, "summaries": summaries, "checkpoint": checkpoint}


def torch_maps(setup, files):
    compose = build_transforms(setup["config"]["DataLoader"]["Eval"]["dataset"]["transform_ops"])
    batch = torch.from_numpy(np.stack([compose(path.read_bytes()) for path in files]))
    with torch.no_grad():
        logits, maps = explain(setup["model"], batch)
    return torch.sigmoid(logits).numpy(), maps.numpy()


def test_the_attention_output_matches_torch_at_batch_1_and_4(setup):
    differences = setup["summaries"]["with"]["max_abs_diff"]
    assert {"1x3x64x64", "4x3x64x64", "1x3x64x64 attention", "4x3x64x64 attention"} == set(differences)
    assert all(value <= 1e-4 for value in differences.values()), differences
    graph = onnx.load(str(setup["folder"] / "with" / "model.onnx")).graph
    assert [output.name for output in graph.output] == ["scores", "attention"]
    assert read_inference_yml(setup["folder"] / "with" / "inference.yml")["attention_output"] == "attention"
    assert read_inference_yml(setup["folder"] / "without" / "inference.yml")["attention_output"] is None
    # the scores are the same graph's either way
    files = sorted(setup["images"].iterdir())
    with_maps = Predictor(setup["folder"] / "with")
    np.testing.assert_allclose(with_maps.scores(files), Predictor(setup["folder"] / "without").scores(files),
                               atol=1e-6)


def test_the_python_api_gives_the_maps_of_a_checkpoint_and_of_an_export(setup):
    files = sorted(setup["images"].iterdir())
    expected_scores, expected_maps = torch_maps(setup, files)
    for model in (setup["checkpoint"], setup["folder"] / "with"):
        scores, maps = Predictor(model, batch_size=2).maps(files)
        np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
        np.testing.assert_allclose(maps, expected_maps, atol=1e-5)
        assert maps.shape == (3, 12, 4, 4)


def test_maps_from_an_export_without_them_say_how_to_re_export(setup):
    with pytest.raises(ConfigError, match="exported without per-label maps.*Global.export_attention=True"):
        Predictor(setup["folder"] / "without").maps(sorted(setup["images"].iterdir()))


def test_infer_writes_an_overlay_per_label_a_grid_and_the_raw_maps(setup, tmp_path):
    result = run_tool("tools/infer.py", "-c", DEMO_CONFIG, *as_argv(setup["overrides"] + [
        f"Infer.infer_imgs={setup['images']}", "Infer.explain=True", f"Infer.explain_dir={tmp_path}",
        "Infer.PostProcess.threshold=0.0"]))
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    files = sorted(setup["images"].iterdir())
    _, expected = torch_maps(setup, files)
    for path, record, maps in zip(files, records, expected):
        folder = tmp_path / path.stem
        assert len(record["class_ids"]) == 12  # threshold 0: every label fires
        drawn = sorted(p.name for p in folder.glob("*.jpg"))
        assert drawn == sorted(["grid.jpg"] + [f"{c}_{n}.jpg" for c, n in
                                               zip(record["class_ids"], record["label_names"])])
        np.testing.assert_allclose(np.load(folder / "maps.npy"), maps, atol=1e-5)
    assert "per-label maps of 3 images" in result.stderr


def test_infer_draws_the_top_k_when_no_label_fires(setup, tmp_path):
    result = run_tool("tools/infer.py", "-c", DEMO_CONFIG, *as_argv(setup["overrides"] + [
        f"Infer.infer_imgs={setup['images']}", "Infer.explain=True", f"Infer.explain_dir={tmp_path}",
        "Infer.PostProcess.threshold=1.0", "Infer.explain_top_k=2"]))
    assert result.returncode == 0, result.stderr[-3000:]
    for line, path in zip(result.stdout.splitlines(), sorted(setup["images"].iterdir())):
        assert json.loads(line)["class_ids"] == []
        assert len(list((tmp_path / path.stem).glob("[0-9]*_*.jpg"))) == 2
        assert (tmp_path / path.stem / "grid.jpg").is_file()


def test_infer_explain_keys_are_checked(setup):
    result = run_tool("tools/infer.py", "-c", DEMO_CONFIG, *as_argv(setup["overrides"] + [
        f"Infer.infer_imgs={setup['images']}", "Infer.explain=1"]))
    assert_user_error(result, "Infer.explain must be true or false")
    result = run_tool("tools/infer.py", "-c", DEMO_CONFIG, *as_argv(setup["overrides"] + [
        f"Infer.infer_imgs={setup['images']}", "Infer.explian=True"]))
    assert_user_error(result, "Infer.explian", "explain")
    a_file = setup["images"] / sorted(p.name for p in setup["images"].iterdir())[0]
    result = run_tool("tools/infer.py", "-c", DEMO_CONFIG, *as_argv(setup["overrides"] + [
        f"Infer.infer_imgs={setup['images']}", "Infer.explain=True", f"Infer.explain_dir={a_file}"]))
    assert_user_error(result, "Infer.explain_dir")
    assert "loaded weights" not in result.stderr  # refused before the model was built


def test_deploy_renders_the_same_maps_without_torch(setup, tmp_path):
    result = run_tool(DEPLOY, "-c", DEPLOY_CONFIG, "--check-no-torch", *as_argv([
        f"Global.inference_model_dir={setup['folder'] / 'with'}", f"Global.infer_imgs={setup['images']}",
        f"Global.save_visual_dir={tmp_path}", "Global.batch_size=2"]))
    assert result.returncode == 0, result.stderr[-3000:]
    files = sorted(setup["images"].iterdir())
    _, expected = torch_maps(setup, files)
    for line, path, maps in zip(result.stdout.splitlines(), files, expected):
        record = json.loads(line)
        folder = tmp_path / path.stem
        labels = record["class_ids"] or [None] * 3  # nothing fired: the 3 best are drawn
        assert len(list(folder.glob("[0-9]*_*.jpg"))) == len(labels)
        np.testing.assert_allclose(np.load(folder / "maps.npy"), maps, atol=1e-4)


def test_deploy_visuals_from_a_model_exported_without_maps_is_a_clear_error(setup, tmp_path):
    result = run_tool(DEPLOY, "-c", DEPLOY_CONFIG, *as_argv([
        f"Global.inference_model_dir={setup['folder'] / 'without'}",
        f"Global.infer_imgs={setup['images']}", f"Global.save_visual_dir={tmp_path / 'visual'}"]))
    assert_user_error(result, "Global.save_visual_dir", "exported without per-label maps",
                      "-o Global.export_attention=True")
    assert result.stdout == ""


@pytest.mark.parametrize("arch", [[], [ML_DECODER]], ids=["query2label", "ml_decoder"])
def test_maps_export_at_any_input_size(tiny_demo_root, tmp_path, arch):
    overrides = tiny_overrides(tiny_demo_root, tmp_path / "output") + arch + [
        "Global.image_shape=[3, 64, 64]", "Global.export_dynamic_spatial=True",
        "Global.export_attention=True", f"Global.save_inference_dir={tmp_path / 'inference'}"]
    config = get_config(DEMO_CONFIG, overrides)
    save_checkpoint({"model": build_model(config["Arch"]).state_dict()}, tmp_path / "weights.pth")
    summary = export_main(["-c", str(DEMO_CONFIG), *as_argv(
        overrides + [f"Global.pretrained_model={tmp_path / 'weights.pth'}"])])
    assert "2x3x96x96 attention" in summary["max_abs_diff"]
    assert all(value <= 1e-4 for value in summary["max_abs_diff"].values()), summary
