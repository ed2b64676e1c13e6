"""The python-backend models of the Triton repository. Each model's model.py holds one import
line of these classes, so the server's Python needs ppq2l and the deploy requirements installed
(`pip install --no-deps ppq2l` plus deploy/triton/requirements-server.txt); nothing is copied
into the repository but the model description (inference.yml, beside model.py).

`triton_python_backend_utils` exists only inside the server's python backend: it is imported when
a model is initialised, so this module imports anywhere. A request whose image cannot be decoded
(or whose scores are NaN/Inf) gets an error response; the other requests of the call are answered
as usual."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ppq2l.data.transforms import build_transforms
from ppq2l.errors import ConfigError, DataError
from ppq2l.export.metadata import DESCRIPTION_FILE, read_inference_yml
from ppq2l.postprocess import build_postprocess
from ppq2l.predict import NON_FINITE

BROKEN_MODEL_ADVICE = "the exported model is broken: re-export it from a good checkpoint"


def model_description(args: dict[str, str]) -> dict[str, Any]:
    """The inference.yml in the model's version folder (Triton's `model_repository` argument is the
    model's own folder)."""
    return read_inference_yml(Path(args["model_repository"]) / str(args["model_version"])
                              / DESCRIPTION_FILE)


class TritonModel:
    """What both models share: the backend utilities, the description, the tensor names and the
    numpy type of the one output, and the per-request loop."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb_utils = pb_utils
        config = json.loads(args["model_config"])
        self.metadata = model_description(args)
        self.source = os.path.join(args["model_repository"], str(args["model_version"]), DESCRIPTION_FILE)
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        output = pb_utils.get_output_config_by_name(config, self.output_name)
        self.output_dtype = pb_utils.triton_string_to_numpy(output["data_type"])
        self.setup()

    def setup(self) -> None:
        """Build what `compute` needs from self.metadata."""

    def compute(self, batch: np.ndarray) -> np.ndarray:
        """One request's input batch -> its output batch; a DataError is that request's error."""
        raise NotImplementedError

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            batch = self.pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            try:
                output = self.compute(batch)
            except (DataError, ConfigError, OSError) as error:
                responses.append(self.pb_utils.InferenceResponse(
                    output_tensors=[], error=self.pb_utils.TritonError(f"{self.input_name}: {error}")))
                continue
            responses.append(self.pb_utils.InferenceResponse(
                output_tensors=[self.pb_utils.Tensor(self.output_name, output)]))
        return responses

    def finalize(self) -> None:
        """Nothing to release."""


class PreprocessModel(TritonModel):
    """Encoded image bytes [B, 1] -> the model input [B, 3, H, W]: the exported preprocessing
    (the config's Eval ops), run by ppq2l's transforms as the deploy predictor runs them."""

    def setup(self) -> None:
        self.transforms = build_transforms(self.metadata["preprocess"], f"{self.source} preprocess")
        self.input_size = None if self.metadata["dynamic_spatial"] else list(self.metadata["input_size"])

    def prepare(self, data: bytes) -> np.ndarray:
        """One encoded image -> its CHW array, with the checks of the deploy predictor."""
        array = self.transforms(bytes(data))
        if not isinstance(array, np.ndarray) or array.ndim != 3 or array.shape[0] != 3:
            raise ConfigError(f"the preprocessing must end with a CHW array (ToCHWImage), got "
                              f"{getattr(array, 'shape', type(array).__name__)}")
        if self.input_size is not None and list(array.shape[1:]) != self.input_size:
            raise ConfigError(f"the preprocessing gives {list(array.shape[1:])} images but the "
                              f"model takes {self.input_size} (height, width)")
        return array

    def compute(self, batch: np.ndarray) -> np.ndarray:
        arrays = []
        for index, data in enumerate(batch.reshape(-1)):
            try:
                arrays.append(self.prepare(data))
            except DataError as error:
                where = f"image {index} of the request: " if batch.size > 1 else ""
                raise DataError(f"{where}{error}") from None
        if len({array.shape for array in arrays}) > 1:
            raise DataError(f"the images of one request give inputs of different sizes "
                            f"{sorted({array.shape for array in arrays})}; send them in separate requests")
        return np.stack(arrays).astype(self.output_dtype, copy=False)


class PostprocessModel(TritonModel):
    """Scores [B, C] -> one JSON record [B, 1] per image, `{class_ids, scores, label_names}`: the
    deploy predictor's record without file_name, from the thresholds and names of the model."""

    def setup(self) -> None:
        self.postprocess = build_postprocess(self.metadata["postprocess"], f"{self.source} postprocess",
                                             label_names=self.metadata["label_names"])

    def compute(self, batch: np.ndarray) -> np.ndarray:
        scores = np.asarray(batch, dtype=np.float32)
        if not np.isfinite(scores).all():
            raise DataError(f"{NON_FINITE}; {BROKEN_MODEL_ADVICE}")
        records = self.postprocess(scores)
        return np.array([[json.dumps(record).encode("utf-8")] for record in records], dtype=np.object_)
