"""The torch-free deploy predictor and the Python API on an exported model: bad files get error
records, scores match the checkpoint's, the preprocessing is the Eval pipeline's to the bit, and
a wrong model is a clear error. The tools run as subprocesses, as a user runs them."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest

import ppq2l
from ppq2l.arch import build_model
from ppq2l.config import get_config
from ppq2l.data.transforms import build_transforms
from ppq2l.engine.checkpoint import save_checkpoint

from conftest import DEMO_CONFIG, REPO, run_tool, tiny_overrides

SCRIPT = REPO / "deploy" / "python" / "predict_multilabel.py"
DEPLOY_CONFIG = REPO / "deploy" / "configs" / "inference_multilabel.yaml"
BAD_FILES = ("empty.jpg", "notes.txt", "truncated.jpg")


def as_argv(overrides):
    return [item for override in overrides for item in ("-o", override)]


@pytest.fixture(scope="module")
def deployed(tiny_demo_root, tmp_path_factory):
    """An exported tiny Query2Label, its torch config, and a folder of good and bad inputs."""
    folder = tmp_path_factory.mktemp("deploy")
    overrides = tiny_overrides(tiny_demo_root, folder / "output") + [
        "Global.image_shape=[3, 64, 64]", f"Global.save_inference_dir={folder / 'inference'}"]
    config = get_config(DEMO_CONFIG, overrides)
    checkpoint = folder / "best_model.pth"  # as the trainer writes it: weights and config
    save_checkpoint({"model": build_model(config["Arch"]).state_dict(), "config": config}, checkpoint)
    overrides.append(f"Global.pretrained_model={checkpoint}")
    result = run_tool("tools/export_model.py", "-c", DEMO_CONFIG, *as_argv(overrides))
    assert result.returncode == 0, result.stderr[-3000:]

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
    return {"folder": folder, "images": images, "config": config, "checkpoint": checkpoint,
            "model_dir": folder / "inference"}


def run_script(*args):
    environment = dict(os.environ, PYTHONPATH=str(REPO))  # this checkout, not an installed copy
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


def test_export_and_checkpoint_give_the_same_records(deployed):
    """The same images through the API twice: onnxruntime on the export, torch on the checkpoint
    alone (its stored config gives the model, preprocessing and label names)."""
    exported = ppq2l.Predictor(deployed["model_dir"], batch_size=4, threshold=0.0)(deployed["images"])
    checkpoint = ppq2l.Predictor(deployed["checkpoint"], batch_size=3, threshold=0.0, device="cpu")
    from_torch = checkpoint([deployed["images"]])
    assert [r["file_name"] for r in exported] == [r["file_name"] for r in from_torch]
    compared = 0
    for ours, theirs in zip(exported, from_torch):
        assert ("error" in ours) == ("error" in theirs)
        if "error" in ours:
            continue
        assert ours["class_ids"] == theirs["class_ids"] == list(range(12))
        assert ours["label_names"] == theirs["label_names"] and len(ours["label_names"]) == 12
        assert np.abs(np.subtract(ours["scores"], theirs["scores"])).max() <= 1e-4
        compared += 1
    assert compared == 10


def eval_batch(deployed, tmp_path, names, normalize_on_device):
    """What evaluation feeds the model for `names`: the Eval DataLoader of the config on a list
    file of those images, finished by `to_model_input` as the evaluator does."""
    from ppq2l.data import build_dataloader
    from ppq2l.data.device_normalize import to_model_input

    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{name}\t{','.join(['0'] * 12)}\n" for name in names))
    section = json.loads(json.dumps(deployed["config"]["DataLoader"]["Eval"]))
    section["dataset"].update(image_root=str(deployed["images"]), cls_label_path=str(listing))
    section["sampler"]["batch_size"] = len(names)
    section["loader"]["normalize_on_device"] = normalize_on_device
    loader = build_dataloader(section, "Eval", 12)
    images, _ = next(iter(loader))
    import torch

    return to_model_input(images, loader, torch.device("cpu")).numpy()


@pytest.mark.parametrize("normalize_on_device", [False, True])
def test_deploy_preprocessing_is_the_eval_preprocessing(deployed, tmp_path, normalize_on_device):
    """ppq2l's rule: the arrays the exported model gets are the arrays evaluation gives the
    model, for every kind of image (photo-sized JPEG and PNG, gray, RGBA, 16-bit, CMYK, huge)."""
    names = ["large.jpg", "large.png", "gray.png", "rgba.png", "deep16.png", "cmyk.jpg", "huge.jpg"]
    predictor = ppq2l.Predictor(deployed["model_dir"])
    deploy = np.stack([predictor.preprocess(deployed["images"] / name) for name in names])
    expected = eval_batch(deployed, tmp_path, names, normalize_on_device)
    assert deploy.shape == expected.shape == (len(names), 3, 64, 64)
    assert deploy.dtype == expected.dtype == np.float32
    assert np.array_equal(deploy, expected)


def test_preprocessing_override_replaces_the_models(deployed):
    ops = [{"DecodeImage": {"to_rgb": False}}, {"ResizeImage": {"size": 64}},
           {"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}]
    path = deployed["images"] / "large.jpg"
    predictor = ppq2l.Predictor(deployed["model_dir"], transform_ops=ops)
    assert np.array_equal(predictor.preprocess(path), build_transforms(ops)(path.read_bytes()))
    assert not np.array_equal(predictor.preprocess(path),
                              ppq2l.Predictor(deployed["model_dir"]).preprocess(path))


def test_gpu_request_without_gpu_still_predicts(deployed):
    predictor = ppq2l.Predictor(deployed["model_dir"] / "model.onnx", use_gpu=True, use_tensorrt=True)
    assert "CPUExecutionProvider" in predictor.backend.device
    records = predictor([deployed["images"] / "large.jpg"])
    assert "class_ids" in records[0]


def test_python_api_needs_no_torch_for_an_export(deployed):
    """`import ppq2l` and a Predictor on an export work where importing torch fails."""
    image = str(deployed["images"] / "large.png")
    code = ("import json, sys\n"
            "sys.modules['torch'] = None  # any import of torch now raises ImportError\n"
            "import cv2, ppq2l\n"
            f"predictor = ppq2l.Predictor({str(deployed['model_dir'])!r})\n"
            f"rgb = cv2.imread({image!r})[..., ::-1]\n"
            f"records = predictor([{image!r}, rgb, {str(deployed['images'] / 'empty.jpg')!r}])\n"
            "print(json.dumps(records))\n"
            "print(predictor.scores([rgb]).shape)\n")
    environment = dict(os.environ, PYTHONPATH=str(REPO))  # this checkout, not an installed copy
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    file_record, array_record, bad_record = json.loads(lines[0])
    assert array_record["file_name"] == "<array 1>" and file_record["file_name"] == image
    assert array_record["class_ids"] == file_record["class_ids"]
    assert array_record["scores"] == file_record["scores"]  # PNG: the same pixels
    assert "cannot decode" in bad_record["error"]
    assert lines[1] == "(1, 12)"


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


def test_io_binding_runner_gives_the_plain_runs_scores(deployed):
    """The IO-binding path, bound on the CPU here (the predictor binds on CUDA only): the same
    scores as session.run, batch after batch (bindings are cleared between calls)."""
    import onnxruntime

    from ppq2l.export.onnx_runtime import io_binding_runner, plain_runner

    session = onnxruntime.InferenceSession(str(deployed["model_dir"] / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    plain = plain_runner(session, "images", "scores", np.float32)
    bound = io_binding_runner(session, "images", "scores", np.float32, "cpu")
    rng = np.random.default_rng(3)
    for size in (3, 1, 3):
        batch = rng.standard_normal((size, 3, 64, 64)).astype(np.float32)
        assert np.array_equal(bound(batch), plain(batch)) and bound(batch).shape == (size, 12)


def test_io_binding_is_used_only_on_the_cuda_provider():
    import logging

    from ppq2l.export.onnx_runtime import binding_device

    logger = logging.getLogger("test_deploy")
    assert binding_device(True, ["CUDAExecutionProvider", "CPUExecutionProvider"], logger) == "cuda"
    assert binding_device(True, ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                 "CPUExecutionProvider"], logger) == "cuda"
    assert binding_device(True, ["CPUExecutionProvider"], logger) is None
    assert binding_device(False, ["CUDAExecutionProvider", "CPUExecutionProvider"], logger) is None


def test_worker_threads_print_the_same_records_in_the_same_order(deployed, tmp_path):
    outputs = []
    for workers in (0, 3):
        save_path = tmp_path / f"records{workers}.jsonl"
        result = run_script("-o", f"Global.infer_imgs={deployed['images']}",
                            "-o", f"Global.inference_model_dir={deployed['model_dir']}",
                            "-o", "Global.batch_size=4", "-o", f"Global.num_workers={workers}",
                            "-o", f"Global.save_path={save_path}")
        assert result.returncode == 1, result.stderr  # the bad files
        assert records_of(result.stdout) == [json.loads(line) for line in
                                             save_path.read_text().splitlines()]
        outputs.append(records_of(result.stdout))
    assert outputs[0] == outputs[1] and len(outputs[0]) == 13
    names = [record["file_name"] for record in outputs[0]]
    assert names == sorted(names, key=lambda name: tuple(name.split(os.sep)))


@pytest.mark.parametrize("override,message", [
    ("Global.num_workers=-1", "Global.num_workers must be an int >= 0 (preprocessing threads"),
    ("Global.num_workers=two", "Global.num_workers must be int, got 'two'"),
    ("Global.batch_size=0", "Global.batch_size must be an int >= 1"),
    ("Global.use_io_binding=maybe", "Global.use_io_binding must be bool, got 'maybe'"),
])
def test_bad_throughput_options_are_clear_errors(deployed, override, message):
    result = run_script("-o", f"Global.infer_imgs={deployed['images']}",
                        "-o", f"Global.inference_model_dir={deployed['model_dir']}", "-o", override)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr
