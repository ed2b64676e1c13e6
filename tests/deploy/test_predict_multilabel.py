"""The torch-free deploy predictor: bad files get error records, scores match tools/infer.py,
preprocessing is the Eval pipeline, and a wrong model is a clear error."""
import importlib.util
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest

from conftest import DEMO_CONFIG, REPO, tiny_overrides
from ppq2l.arch import build_model
from ppq2l.config import get_config
from ppq2l.data.transforms import build_transforms
from ppq2l.engine.checkpoint import save_checkpoint

SCRIPT = REPO / "deploy" / "python" / "predict_multilabel.py"
DEPLOY_CONFIG = REPO / "deploy" / "configs" / "inference_multilabel.yaml"
BAD_FILES = ("empty.jpg", "notes.txt", "truncated.jpg")


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def as_argv(overrides):
    return [item for override in overrides for item in ("-o", override)]


@pytest.fixture(scope="module")
def deployed(tiny_demo_root, tmp_path_factory):
    """An exported tiny Query2Label, its torch config, and a folder of good and bad inputs."""
    folder = tmp_path_factory.mktemp("deploy")
    overrides = tiny_overrides(tiny_demo_root, folder / "output") + [
        "Global.image_shape=[3, 64, 64]",
        f"Global.save_inference_dir={folder / 'inference'}"]
    config = get_config(DEMO_CONFIG, overrides)
    checkpoint = folder / "weights.pth"
    save_checkpoint({"model": build_model(config["Arch"]).state_dict()}, checkpoint)
    overrides.append(f"Global.pretrained_model={checkpoint}")
    load_module(REPO / "tools" / "export_model.py", "tool_export").main(
        ["-c", str(DEMO_CONFIG), *as_argv(overrides)])

    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(7)
    picture = cv2.GaussianBlur((rng.random((480, 640, 3)) * 255).astype(np.uint8), (9, 9), 3)
    assert cv2.imwrite(str(images / "large.jpg"), picture)
    assert cv2.imwrite(str(images / "large.png"), picture[:, ::-1])
    for source in sorted((tiny_demo_root / "val2017").iterdir())[:3]:
        (images / source.name).write_bytes(source.read_bytes())
    # every kind of readable image a user may have: gray, RGBA, 16-bit, CMYK and very large
    assert cv2.imwrite(str(images / "gray.png"), picture[:, :, 0])
    assert cv2.imwrite(str(images / "rgba.png"), np.dstack([picture, picture[:, :, :1]]))
    assert cv2.imwrite(str(images / "deep16.png"), picture.astype(np.uint16) * 257)
    assert cv2.imwrite(str(images / "huge.jpg"), cv2.resize(picture, (4000, 3000)))
    from PIL import Image
    Image.fromarray(picture[:, :, ::-1]).convert("CMYK").save(images / "cmyk.jpg")
    (images / "empty.jpg").write_bytes(b"")
    (images / "notes.txt").write_text("not an image", encoding="utf-8")
    jpeg = (images / "large.jpg").read_bytes()
    (images / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    return {"folder": folder, "images": images, "overrides": overrides,
            "model_dir": folder / "inference"}


def run_script(*args):
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([sys.executable, str(SCRIPT), "-c", str(DEPLOY_CONFIG), *map(str, args)],
                          cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)


def records_of(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_bad_inputs_get_error_records_without_torch(deployed):
    result = run_script("-o", f"Global.infer_imgs={deployed['images']}",
                        "-o", f"Global.inference_model_dir={deployed['model_dir']}",
                        "-o", "Global.batch_size=3", "--check-no-torch")
    assert result.returncode == 1, result.stderr  # 3 would mean torch was imported
    records = {os.path.basename(r["file_name"]): r for r in records_of(result.stdout)}
    assert len(records) == 13
    for name in BAD_FILES:
        assert "error" in records[name] and "cannot decode" in records[name]["error"]
        assert name in result.stderr  # the summary names every failed file
    good = [record for name, record in records.items() if name not in BAD_FILES]
    assert len(good) == 10
    assert all("error" not in r and set(r) == {"class_ids", "scores", "label_names", "file_name"}
               for r in good)
    assert all(len(r["label_names"]) == len(r["class_ids"]) for r in good)


def test_good_folder_exits_zero_and_saves_jsonl(deployed, tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    (good / "large.png").write_bytes((deployed["images"] / "large.png").read_bytes())
    save_path = tmp_path / "out" / "records.jsonl"
    result = run_script("-o", f"Global.infer_imgs={good}",
                        "-o", f"Global.inference_model_dir={deployed['model_dir']}",
                        "-o", f"Global.save_path={save_path}", "-o", "Global.benchmark=True")
    assert result.returncode == 0, result.stderr
    saved = [json.loads(line) for line in save_path.read_text().splitlines()]
    assert saved == records_of(result.stdout) and len(saved) == 1
    assert "inference" in result.stderr and "ms/image" in result.stderr


def test_scores_match_torch_infer_tool(deployed, tmp_path):
    predict = load_module(SCRIPT, "deploy_predict")
    config = predict.load_deploy_config(DEPLOY_CONFIG, [
        f"Global.infer_imgs={deployed['images']}", f"Global.inference_model_dir={deployed['model_dir']}",
        "Global.batch_size=4", "PostProcess={name: MultiLabelThreshOutput, threshold: 0.0}"])
    deploy_records = predict.run(config)
    infer = load_module(REPO / "tools" / "infer.py", "tool_infer")
    torch_records = infer.main(["-c", str(DEMO_CONFIG), *as_argv(deployed["overrides"] + [
        f"Infer.infer_imgs={deployed['images']}", "Infer.PostProcess.threshold=0.0",
        f"Global.output_dir={tmp_path}"])])
    assert [r["file_name"] for r in deploy_records] == [r["file_name"] for r in torch_records]
    compared = 0
    for ours, theirs in zip(deploy_records, torch_records):
        assert ("error" in ours) == ("error" in theirs)
        if "error" in ours:
            continue
        assert ours["class_ids"] == theirs["class_ids"] == list(range(12))
        assert ours["label_names"] == theirs["label_names"]
        assert np.abs(np.subtract(ours["scores"], theirs["scores"])).max() <= 1e-4
        compared += 1
    assert compared == 10


@pytest.mark.parametrize("name", ["large.jpg", "large.png"])
def test_preprocessing_equals_eval_transforms(deployed, name):
    predictor_module = load_module(REPO / "deploy" / "python" / "onnx_predictor.py", "onnx_predictor_t")
    predictor = predictor_module.OnnxMultiLabelPredictor(deployed["model_dir"])
    config = get_config(DEMO_CONFIG, deployed["overrides"])
    eval_ops = build_transforms(config["DataLoader"]["Eval"]["dataset"]["transform_ops"])
    path = deployed["images"] / name
    expected = eval_ops(path.read_bytes())
    actual = predictor.preprocess(path)
    assert actual.shape == (3, 64, 64) and actual.dtype == np.float32
    assert np.array_equal(actual, expected)


def test_yaml_preprocessing_override_is_used(deployed):
    predictor_module = load_module(REPO / "deploy" / "python" / "onnx_predictor.py", "onnx_predictor_o")
    ops = [{"DecodeImage": {"to_rgb": False}}, {"ResizeImage": {"size": 64}},
           {"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}]
    predictor = predictor_module.OnnxMultiLabelPredictor(deployed["model_dir"], transform_ops=ops)
    path = deployed["images"] / "large.jpg"
    assert np.array_equal(predictor.preprocess(path), build_transforms(ops)(path.read_bytes()))


def test_gpu_request_without_gpu_still_predicts(deployed):
    predictor_module = load_module(REPO / "deploy" / "python" / "onnx_predictor.py", "onnx_predictor_g")
    predictor = predictor_module.OnnxMultiLabelPredictor(deployed["model_dir"], use_gpu=True,
                                                         use_tensorrt=True)
    assert "CPUExecutionProvider" in predictor.providers
    records = predictor.predict_files([deployed["images"] / "large.jpg"])
    assert "class_ids" in records[0]


def test_missing_model_is_a_clear_error(deployed, tmp_path):
    result = run_script("-o", f"Global.infer_imgs={deployed['images']}",
                        "-o", f"Global.inference_model_dir={tmp_path / 'nothing'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"inference model not found: {tmp_path / 'nothing' / 'model.onnx'}" in result.stderr


def test_non_onnx_file_is_a_clear_error(deployed, tmp_path):
    (tmp_path / "model.onnx").write_text("not a model", encoding="utf-8")
    result = run_script("-o", f"Global.infer_imgs={deployed['images']}",
                        "-o", f"Global.inference_model_dir={tmp_path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not a valid ONNX model" in result.stderr


def test_model_without_our_metadata_is_a_clear_error(deployed, tmp_path):
    model = onnx.load(str(deployed["model_dir"] / "model.onnx"))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "model.onnx"))
    result = run_script("-o", f"Global.infer_imgs={deployed['images']}",
                        "-o", f"Global.inference_model_dir={tmp_path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no 'ppq2l' metadata" in result.stderr


def test_unknown_deploy_key_is_rejected(deployed):
    result = run_script("-o", "Global.use_gpuu=true")
    assert result.returncode == 2 and "Global.use_gpuu" in result.stderr


def test_non_finite_scores_get_error_records_not_empty_predictions(deployed):
    """Thresholding NaN gives an empty prediction that looks valid; it must be an error record."""
    predictor_module = load_module(REPO / "deploy" / "python" / "onnx_predictor.py", "onnx_predictor_n")
    predictor = predictor_module.OnnxMultiLabelPredictor(deployed["model_dir"])
    scores = np.full((3, 12), 0.9, np.float32)
    scores[0, 4], scores[2, 0] = np.nan, np.inf
    records = predictor.postprocess_scores(scores, ["a.jpg", "b.jpg", "c.jpg"])
    assert [record["file_name"] for record in records] == ["a.jpg", "b.jpg", "c.jpg"]
    assert "non-finite scores" in records[0]["error"] and "non-finite scores" in records[2]["error"]
    assert "error" not in records[1] and records[1]["class_ids"] == list(range(12))
