"""Send images to the ppq2l ensemble of a Triton server and print one JSON record per file:
python deploy/triton/client.py --url localhost:8000 IMAGE_OR_FOLDER [...]
python deploy/triton/client.py --url localhost:8001 --protocol grpc IMAGE_OR_FOLDER [...]
Each file is one request holding its encoded bytes (the server decodes and preprocesses it), so
a file the server cannot decode gets `{"file_name", "error"}` and the others are predicted; the
exit status is then 1. An unreachable server or a missing model is one `error:` line, status 2.
Needs tritonclient (deploy/triton/requirements.txt) and ppq2l (pip install --no-deps ppq2l)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ppq2l.data.image_files import collect_image_files
from ppq2l.errors import ConfigError
from ppq2l.export.triton.model_config import IMAGE_INPUT, LABELS_OUTPUT
from ppq2l.postprocess.records import print_records, run_records_cli

DEFAULT_PORTS = {"http": 8000, "grpc": 8001}


class TritonLabels:
    """A connection to the ensemble `model` of a Triton server over `protocol` (http or grpc)."""

    def __init__(self, url: str, model: str = "ppq2l", protocol: str = "http", timeout_s: float = 60.0) -> None:
        if protocol not in DEFAULT_PORTS:
            raise ConfigError(f"--protocol must be http or grpc, got {protocol!r}")
        if protocol == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
        from tritonclient.utils import InferenceServerException

        self.module, self.model, self.failure = module, model, InferenceServerException
        self.protocol, self.timeout_s = protocol, timeout_s
        self.client = (module.InferenceServerClient(url=url, network_timeout=timeout_s)
                       if protocol == "http" else module.InferenceServerClient(url=url))
        try:
            ready = self.client.is_model_ready(model)
        except (InferenceServerException, OSError, ConnectionError) as error:
            raise ConfigError(f"cannot reach a Triton server at {url} over {protocol} "
                              f"(default port {DEFAULT_PORTS[protocol]}): {error}") from None
        if not ready:
            raise ConfigError(f"the Triton server at {url} has no ready model {model!r}; check "
                              f"--model and the server's log (tools/export_triton.py --name)")

    def predict(self, data: bytes) -> dict:
        """One encoded image -> its record `{class_ids, scores, label_names}`; the server's error
        for this image is raised as InferenceServerException (see `self.failure`)."""
        image = self.module.InferInput(IMAGE_INPUT, [1, 1], "BYTES")
        image.set_data_from_numpy(np.array([[data]], dtype=np.object_))
        output = self.module.InferRequestedOutput(LABELS_OUTPUT)
        # the http client's timeouts are set on its connection, the grpc client's per call
        keywords: dict[str, Any] = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        result = self.client.infer(self.model, [image], outputs=[output], **keywords)
        return json.loads(result.as_numpy(LABELS_OUTPUT).reshape(-1)[0])

    def record(self, path: Path) -> dict:
        """The record of one file, or `{file_name, error}` when it or the server fails for it."""
        try:
            record = self.predict(path.read_bytes())
        except (self.failure, OSError) as error:
            message = error.message() if isinstance(error, self.failure) else str(error)
            return {"file_name": str(path), "error": message}
        record["file_name"] = str(path)
        return record


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="image files or folders")
    parser.add_argument("--url", default="localhost:8000", help="host:port of the server")
    parser.add_argument("--protocol", choices=tuple(DEFAULT_PORTS), default="http")
    parser.add_argument("--model", default="ppq2l", help="the ensemble's name (export_triton.py --name)")
    parser.add_argument("--timeout_s", type=float, default=60.0, help="seconds to wait for one answer")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_arguments(argv)
    if not args.timeout_s > 0:
        raise ConfigError(f"--timeout_s must be > 0, got {args.timeout_s}")
    files = [path for position, item in enumerate(args.inputs)
             for path in collect_image_files(item, f"inputs[{position}]")]
    client = TritonLabels(args.url, args.model, args.protocol, args.timeout_s)
    records = [client.record(path) for path in files]  # one request per file, in order
    print_records(records)
    return records


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 all predicted, 1 some files failed, 2 a mistake or no server."""
    return run_records_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
