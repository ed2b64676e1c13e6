"""The Triton repository of tools/export_triton.py without a server: every config.pbtxt parses
as Triton's ModelConfig and the ensemble's steps fit the models they call; the python-backend
models' execute, run under a stub of triton_python_backend_utils with the ONNX step done by
onnxruntime, gives the deploy predictor's records; a corrupt image fails its own request only."""
import importlib.util
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import onnxruntime
import pytest
import triton_stub
from google.protobuf import text_format  # installed with tritonclient
from test_onnx_export import export_overrides
from tritonclient.grpc import model_config_pb2  # requirements-test.txt: deploy/triton/requirements.txt

import ppq2l
from ppq2l.commands.export_triton import main as export_triton_main

from conftest import DEMO_CONFIG, REPO, assert_user_error, run_tool

pytestmark = pytest.mark.slow  # exports a model and runs the tool as subprocesses (about 30 s)
THRESHOLDS = [0.3, 0.9] * 6  # per class, 12 classes: some classes pass, some do not
MODELS = ("ppq2l", "ppq2l_preprocess", "ppq2l_onnx", "ppq2l_postprocess")


def parse_config(path):
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def repository(tiny_demo_root, tmp_path_factory):
    """A tiny Q2L exported from a config and checkpoint with per-class thresholds, its Triton
    repository, and images: three demo images, a photo-like JPEG, a corrupt and an empty file."""
    folder = tmp_path_factory.mktemp("triton")
    overrides = export_overrides(tiny_demo_root, folder,
                                 [f"Infer.PostProcess.threshold={json.dumps(THRESHOLDS)}"])
    summary = export_triton_main(["-c", str(DEMO_CONFIG), *sum((["-o", o] for o in overrides), []),
                                  "--output", str(folder / "repo"), "--kind", "cpu",
                                  "--max_batch_size", "8", "--preferred_batch_sizes", "4", "8"])
    images = folder / "images"
    images.mkdir()
    for source in sorted((tiny_demo_root / "val2017").iterdir())[:3]:
        (images / source.name).write_bytes(source.read_bytes())
    rng = np.random.default_rng(5)
    picture = cv2.GaussianBlur((rng.random((300, 400, 3)) * 255).astype(np.uint8), (9, 9), 3)
    assert cv2.imwrite(str(images / "photo.jpg"), picture)
    jpeg = (images / "photo.jpg").read_bytes()
    (images / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 3])
    (images / "empty.jpg").write_bytes(b"")
    return {"folder": folder, "repo": folder / "repo", "model_dir": folder / "inference",
            "images": images, "summary": summary}


def test_every_config_parses_and_the_ensemble_fits_its_models(repository):
    repo = repository["repo"]
    assert sorted(path.name for path in repo.iterdir()) == sorted(MODELS)
    configs = {name: parse_config(repo / name / "config.pbtxt") for name in MODELS}
    for name, config in configs.items():
        assert config.name == name and config.max_batch_size == 8
        assert (repo / name / "1").is_dir()
    model = configs["ppq2l_onnx"]
    assert model.backend == "onnxruntime"
    assert list(model.dynamic_batching.preferred_batch_size) == [4, 8]
    assert [(group.count, group.kind) for group in model.instance_group] == \
        [(1, model_config_pb2.ModelInstanceGroup.KIND_CPU)]
    assert not model.optimization.execution_accelerators.gpu_execution_accelerator
    # the ONNX model's own input and output are what its config declares
    session = onnxruntime.InferenceSession(str(repo / "ppq2l_onnx" / "1" / "model.onnx"))
    (model_input,), outputs = model.input, {item.name: item for item in model.output}
    assert session.get_inputs()[0].name == model_input.name
    assert list(model_input.dims) == [3, 64, 64] and model_input.data_type == model_config_pb2.TYPE_FP32
    assert list(outputs[session.get_outputs()[0].name].dims) == [12]
    # every ensemble step maps existing tensors of the model it calls, with the same type and shape
    ensemble = configs["ppq2l"]
    assert ensemble.platform == "ensemble"
    produced = {tensor.name: (tensor.data_type, list(tensor.dims)) for tensor in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        called = configs[step.model_name]
        inputs = {tensor.name: (tensor.data_type, list(tensor.dims)) for tensor in called.input}
        outputs = {tensor.name: (tensor.data_type, list(tensor.dims)) for tensor in called.output}
        assert set(step.input_map) == set(inputs)
        for key, value in step.input_map.items():
            assert produced[value] == inputs[key], (step.model_name, key)
        for key, value in step.output_map.items():
            produced[value] = outputs[key]
    for tensor in ensemble.output:
        assert produced[tensor.name] == (tensor.data_type, list(tensor.dims)), tensor.name
    # an ensemble output that also feeds a step is pruned when a client asks for the other outputs
    # only, and Triton then fails the request ("unexpected deadlock")
    consumed = {value for step in ensemble.ensemble_scheduling.step for value in step.input_map.values()}
    assert not consumed & {tensor.name for tensor in ensemble.output}
    assert [tensor.name for tensor in ensemble.output] == ["LABELS"]
    for name in ("ppq2l_preprocess", "ppq2l_postprocess"):
        assert configs[name].backend == "python"
        assert (repo / name / "1" / "model.py").is_file() and (repo / name / "1" / "inference.yml").is_file()


def test_tensorrt_fp16_gpu_options(repository, tmp_path):
    export_triton_main(["--model_dir", str(repository["model_dir"]), "--output", str(tmp_path / "repo"),
                        "--tensorrt", "--tensorrt_fp16", "--instances", "2", "--name", "shapes"])
    config = parse_config(tmp_path / "repo" / "shapes_onnx" / "config.pbtxt")
    assert [(group.count, group.kind) for group in config.instance_group] == \
        [(2, model_config_pb2.ModelInstanceGroup.KIND_GPU)]
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    ensemble = parse_config(tmp_path / "repo" / "shapes" / "config.pbtxt")
    assert [step.model_name for step in ensemble.ensemble_scheduling.step] == \
        ["shapes_preprocess", "shapes_onnx", "shapes_postprocess"]


def load_model(repo, name, monkeypatch):
    """The TritonPythonModel of the repository's model.py, initialised as the backend does."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", triton_stub.module())
    spec = importlib.util.spec_from_file_location(f"{name}_model", repo / name / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize(triton_stub.model_args(repo / name, parse_config(repo / name / "config.pbtxt")))
    return model


def request(name, array):
    return triton_stub.InferenceRequest([triton_stub.Tensor(name, array)])


def test_python_models_give_the_deploy_predictors_records(repository, monkeypatch):
    repo, images = repository["repo"], repository["images"]
    preprocess = load_model(repo, "ppq2l_preprocess", monkeypatch)
    postprocess = load_model(repo, "ppq2l_postprocess", monkeypatch)
    session = onnxruntime.InferenceSession(str(repo / "ppq2l_onnx" / "1" / "model.onnx"))
    predictor = ppq2l.Predictor(repository["model_dir"], batch_size=4)
    files = sorted(images.iterdir())
    expected = {record["file_name"]: record for record in predictor(files)}
    # one request per image, all in one execute call, as Triton hands them to a model instance
    responses = preprocess.execute([request("IMAGE", np.array([[path.read_bytes()]], dtype=np.object_))
                                    for path in files])
    assert len(responses) == len(files)
    good = 0
    for path, response in zip(files, responses):
        record = expected[str(path)]
        if "error" in record:  # the corrupt and the empty file: an error for that request only
            assert path.name in ("truncated.jpg", "empty.jpg")
            assert response.has_error() and response.output_tensors() == []
            assert "cannot decode image data" in response.error().message(), response.error().message()
            continue
        assert not response.has_error()
        (tensor,) = response.output_tensors()
        assert tensor.name() == "images" and tensor.as_numpy().dtype == np.float32
        # the same input array as the deploy predictor's, to the bit
        np.testing.assert_array_equal(tensor.as_numpy()[0], predictor.preprocess(path))
        scores = session.run(["scores"], {"images": tensor.as_numpy()})[0]
        (answer,) = postprocess.execute([request("scores", scores)])
        assert not answer.has_error()
        (labels,) = answer.output_tensors()
        assert labels.name() == "LABELS" and labels.as_numpy().shape == (1, 1)
        served = json.loads(labels.as_numpy()[0, 0])
        assert served == {key: value for key, value in record.items() if key != "file_name"}
        good += 1
    assert good == 4
    # the per-class thresholds are applied: at least one image has a label, not all classes pass
    assert any(record.get("class_ids") for record in expected.values())
    assert all(len(record.get("class_ids", [])) < 12 for record in expected.values())


def test_postprocess_refuses_non_finite_scores_per_request(repository, monkeypatch):
    postprocess = load_model(repository["repo"], "ppq2l_postprocess", monkeypatch)
    scores = np.full((1, 12), 0.95, dtype=np.float32)
    broken = scores.copy()
    broken[0, 3] = np.nan
    first, second = postprocess.execute([request("scores", broken), request("scores", scores)])
    assert first.has_error() and "non-finite" in first.error().message()
    assert json.loads(second.output_tensors()[0].as_numpy()[0, 0])["class_ids"] == \
        [index for index, threshold in enumerate(THRESHOLDS) if threshold <= 0.95]


def test_mistakes_are_one_error_line(repository, tmp_path):
    repo = repository["repo"]
    result = run_tool("tools/export_triton.py", "--model_dir", repository["model_dir"], "--output", repo)
    assert_user_error(result, str(repo), "--overwrite")
    result = run_tool("tools/export_triton.py", "--model_dir", tmp_path, "--output", tmp_path / "r")
    assert_user_error(result, "model.onnx")
    result = run_tool("tools/export_triton.py", "--model_dir", repository["model_dir"], "--output",
                      tmp_path / "r", "--preferred_batch_sizes", "64")
    assert_user_error(result, "--preferred_batch_sizes [64]", "--max_batch_size 32")
    result = run_tool("tools/export_triton.py", "--model_dir", repository["model_dir"], "--output",
                      tmp_path / "r", "--kind", "cpu", "--tensorrt")
    assert_user_error(result, "--tensorrt", "--kind gpu")
    assert not (tmp_path / "r").exists()


def test_the_model_is_read_without_an_onnxruntime_session(repository, tmp_path, monkeypatch):
    from ppq2l.export.triton.repository import read_exported_model

    def no_session(*args, **kwargs):
        raise AssertionError("read_exported_model built an onnxruntime session")

    monkeypatch.setattr(onnxruntime, "InferenceSession", no_session)
    path, metadata = read_exported_model(repository["model_dir"])
    assert path == repository["model_dir"] / "model.onnx"
    assert (metadata["input_name"], metadata["output_name"], metadata["class_num"]) == ("images", "scores", 12)
    (tmp_path / "model.onnx").write_text("not a model", encoding="utf-8")
    result = run_tool("tools/export_triton.py", "--model_dir", tmp_path, "--output", tmp_path / "r")
    assert_user_error(result, f"cannot read {tmp_path / 'model.onnx'} as an ONNX model")


def test_the_command_line_defaults_are_the_serving_options_defaults():
    import dataclasses

    from ppq2l.commands.export_triton import parse_arguments
    from ppq2l.export.triton.model_config import ServingOptions

    arguments = parse_arguments(["--model_dir", "m", "--output", "r"])
    for field in dataclasses.fields(ServingOptions):
        if field.init:
            given = getattr(arguments, field.name)
            assert (list(given) if field.name == "preferred_batch_sizes" else given) == \
                (list(field.default) if field.name == "preferred_batch_sizes" else field.default), field.name


def test_overwrite_replaces_the_repository(repository, tmp_path):
    target = tmp_path / "repo"
    export_triton_main(["--model_dir", str(repository["model_dir"]), "--output", str(target), "--name", "a"])
    export_triton_main(["--model_dir", str(repository["model_dir"]), "--output", str(target), "--name", "b",
                        "--overwrite"])
    assert sorted(path.name for path in target.iterdir()) == \
        ["b", "b_onnx", "b_postprocess", "b_preprocess"]
    assert [path.name for path in tmp_path.iterdir()] == ["repo"]  # no build or previous folder left


def test_client_without_a_server_is_one_error_line(repository):
    result = run_tool("deploy/triton/client.py", "--url", "127.0.0.1:9", repository["images"])
    assert_user_error(result, "cannot reach a Triton server at 127.0.0.1:9")


def test_repository_and_python_models_need_no_torch(repository, tmp_path):
    """The python models run in the server's Python and the writer on a deploy machine: no torch."""
    code = ("import sys\n"
            "sys.modules['torch'] = None  # any import of torch now raises ImportError\n"
            "import ppq2l.export.triton.python_models\n"
            "from ppq2l.commands.export_triton import cli\n"
            f"sys.exit(cli(['--model_dir', {str(repository['model_dir'])!r}, '--output', "
            f"{str(tmp_path / 'repo')!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "repo" / "ppq2l_onnx" / "1" / "model.onnx").is_file()
