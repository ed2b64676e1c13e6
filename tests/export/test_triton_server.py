"""The Triton repository served by a real tritonserver. Runs where one can start, skipped with the
reason otherwise: `tritonserver` on the PATH with its backends in ../backends (the official
container), or TRITONSERVER and TRITON_BACKEND_DIR set (e.g. the server bundled in the
nvidia-pytriton wheel, which has the python backend only). TRITON_PYTHON_ENV, when set, is the
Python environment (with ppq2l importable) the python models run in (--python_env).

With the onnxruntime backend: the ensemble end to end through deploy/triton/client.py over http
and grpc. With the python backend: the preprocess and postprocess models over http and grpc give
the deploy predictor's input arrays and records, and a corrupt JPEG fails its own request only."""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from test_triton_repository import repository  # noqa: F401  (the exported model and images, a fixture)

import ppq2l

from conftest import run_tool

pytestmark = pytest.mark.slow


def find_server(backends_needed):
    """(tritonserver, backend folder), or skip saying why no server can start here."""
    binary = os.environ.get("TRITONSERVER") or shutil.which("tritonserver")
    if not binary:
        pytest.skip("no tritonserver on the PATH (set TRITONSERVER, or run in the Triton container)")
    backends = Path(os.environ.get("TRITON_BACKEND_DIR") or Path(binary).resolve().parents[1] / "backends")
    missing = [name for name in backends_needed if not (backends / name).is_dir()]
    if missing:
        pytest.skip(f"{binary} has no {', '.join(missing)} backend in {backends} (set TRITON_BACKEND_DIR)")
    return binary, backends


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_repository(model_dir, target, keep=None):
    """The repository for CPU instances (only the models named in `keep`, when given)."""
    python_env = os.environ.get("TRITON_PYTHON_ENV")
    result = run_tool("tools/export_triton.py", "--model_dir", model_dir, "--output", target, "--kind", "cpu",
                      "--python_instances", "1", *(["--python_env", python_env] if python_env else []))
    assert result.returncode == 0, result.stderr[-3000:]
    for folder in target.iterdir():
        if keep is not None and folder.name not in keep:
            shutil.rmtree(folder)


@contextlib.contextmanager
def serving(binary, backends, repository_dir, log_path, timeout_s=180):
    """A tritonserver on free ports until the block ends; yields {"http": port, "grpc": port}."""
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [binary, f"--model-repository={repository_dir}", f"--backend-directory={backends}",
             f"--http-port={ports['http']}", f"--grpc-port={ports['grpc']}", f"--metrics-port={ports['metrics']}"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while not ready(ports["http"]):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"tritonserver did not get ready: {log_path.read_text()[-4000:]}")
                time.sleep(1)
            yield ports
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def ready(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


MODEL_STEP_ON_PYTHON = '''"""Test stand-in: the ONNX step run by onnxruntime inside the python backend."""
import os

import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.session = onnxruntime.InferenceSession(
            os.path.join(args["model_repository"], args["model_version"], "model.onnx"))

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("scores", self.session.run(
            ["scores"], {"images": pb_utils.get_input_tensor_by_name(request, "images").as_numpy()})[0])])
            for request in requests]
'''


def model_step_on_python(target):
    """Run the repository's ONNX model with the python backend (onnxruntime in its environment)."""
    config = target / "ppq2l_onnx" / "config.pbtxt"
    text = config.read_text().replace('backend: "onnxruntime"', 'backend: "python"')
    python_env = os.environ.get("TRITON_PYTHON_ENV")
    if python_env:
        text += f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: {json.dumps(python_env)} }} }}\n'
    config.write_text(text)
    (target / "ppq2l_onnx" / "1" / "model.py").write_text(MODEL_STEP_ON_PYTHON)


@pytest.mark.parametrize("model_backend", ["onnxruntime", "python"])
def test_ensemble_end_to_end_over_http_and_grpc(model_backend, repository, tmp_path):  # noqa: F811
    """With model_backend python (for a server without the onnxruntime backend), the ensemble's
    scheduling, the python models and the client still run for real; only the ONNX step's backend
    differs."""
    binary, backends = find_server((model_backend, "python"))
    write_repository(repository["model_dir"], tmp_path / "repo")
    if model_backend == "python":
        model_step_on_python(tmp_path / "repo")
    expected = {record["file_name"]: record for record in
                ppq2l.Predictor(repository["model_dir"])(sorted(repository["images"].iterdir()))}
    with serving(binary, backends, tmp_path / "repo", tmp_path / "server.log") as ports:
        for protocol in ("http", "grpc"):
            result = run_tool("deploy/triton/client.py", "--url", f"127.0.0.1:{ports[protocol]}",
                              "--protocol", protocol, repository["images"])
            assert result.returncode == 1, result.stderr[-3000:]  # two bad files, the rest predicted
            records = [json.loads(line) for line in result.stdout.splitlines()]
            assert [record["file_name"] for record in records] == sorted(expected)
            for record in records:
                want = expected[record["file_name"]]
                if "error" in want:
                    assert "cannot decode image data" in record["error"], record
                else:  # the server's onnxruntime may be another version: scores to 1e-4
                    assert (record["class_ids"], record["label_names"]) == (want["class_ids"], want["label_names"])
                    np.testing.assert_allclose(record["scores"], want["scores"], atol=1e-4)


def test_python_models_on_the_real_backend(repository, tmp_path):  # noqa: F811
    binary, backends = find_server(("python",))
    import tritonclient.grpc
    import tritonclient.http
    from tritonclient.utils import InferenceServerException

    write_repository(repository["model_dir"], tmp_path / "repo", keep=("ppq2l_preprocess", "ppq2l_postprocess"))
    predictor = ppq2l.Predictor(repository["model_dir"])
    session = onnxruntime.InferenceSession(str(repository["model_dir"] / "model.onnx"))
    files = sorted(repository["images"].iterdir())
    with serving(binary, backends, tmp_path / "repo", tmp_path / "server.log") as ports:
        for module in (tritonclient.http, tritonclient.grpc):
            client = module.InferenceServerClient(f"127.0.0.1:{ports[module.__name__.split('.')[-1]]}")
            answered = 0
            for path in files:  # a corrupt file between good ones: only its own request fails
                image = module.InferInput("IMAGE", [1, 1], "BYTES")
                image.set_data_from_numpy(np.array([[path.read_bytes()]], dtype=np.object_))
                if path.name in ("truncated.jpg", "empty.jpg"):
                    with pytest.raises(InferenceServerException, match="IMAGE: cannot decode image data"):
                        client.infer("ppq2l_preprocess", [image])
                    continue
                array = client.infer("ppq2l_preprocess", [image]).as_numpy("images")
                np.testing.assert_array_equal(array[0], predictor.preprocess(path))
                scores = session.run(["scores"], {"images": array})[0]
                tensor = module.InferInput("scores", list(scores.shape), "FP32")
                tensor.set_data_from_numpy(scores)
                labels = client.infer("ppq2l_postprocess", [tensor]).as_numpy("LABELS")
                record = predictor([path])[0]
                del record["file_name"]
                assert json.loads(labels.reshape(-1)[0]) == record
                answered += 1
            assert answered == 4
