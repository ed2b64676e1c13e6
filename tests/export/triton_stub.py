"""A stand-in for `triton_python_backend_utils`, the module Triton's python backend gives its
models: the calls the ppq2l models make, with the real module's signatures, and `model_args`,
the `args` the backend passes to `initialize` (the config as JSON with proto field names)."""
import json
import types

import numpy as np


class Tensor:
    def __init__(self, name, array):
        self._name, self._array = name, np.asarray(array)

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array


class TritonError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self._message = message

    def message(self):
        return self._message


class InferenceResponse:
    def __init__(self, output_tensors, error=None):
        self._tensors, self._error = list(output_tensors), error

    def output_tensors(self):
        return self._tensors

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error


class InferenceRequest:
    """What a request holds for a model's execute: its input tensors."""

    def __init__(self, inputs):
        self._inputs = list(inputs)

    def inputs(self):
        return self._inputs


def get_input_tensor_by_name(request, name):
    return next((item for item in request.inputs() if item.name() == name), None)


def get_output_config_by_name(model_config, name):
    return next((item for item in model_config.get("output", []) if item["name"] == name), None)


NUMPY_TYPES = {"TYPE_BOOL": np.bool_, "TYPE_UINT8": np.uint8, "TYPE_INT32": np.int32,
               "TYPE_INT64": np.int64, "TYPE_FP16": np.float16, "TYPE_FP32": np.float32,
               "TYPE_FP64": np.float64, "TYPE_STRING": np.object_}


def triton_string_to_numpy(triton_type):
    return NUMPY_TYPES[triton_type]


def module():
    """The stub as a module object, to put into sys.modules under the backend's module name."""
    stub = types.ModuleType("triton_python_backend_utils")
    for name in ("Tensor", "TritonError", "InferenceResponse", "InferenceRequest",
                 "get_input_tensor_by_name", "get_output_config_by_name", "triton_string_to_numpy"):
        setattr(stub, name, globals()[name])
    return stub


def model_args(model_folder, config_message):
    """The `args` of TritonPythonModel.initialize for the model in `model_folder`, version 1."""
    from google.protobuf import json_format

    config = json_format.MessageToDict(config_message, preserving_proto_field_name=True)
    return {"model_config": json.dumps(config), "model_repository": str(model_folder),
            "model_version": "1", "model_name": model_folder.name, "model_instance_kind": "CPU"}
