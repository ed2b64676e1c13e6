"""The config.pbtxt texts of the Triton repository (protobuf text format of Triton's
ModelConfig). Written as text, so that building a repository needs no tritonclient; the tests
parse every one with tritonclient's model_config protobuf."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

from ppq2l.checks import integer
from ppq2l.errors import ConfigError

IMAGE_INPUT, LABELS_OUTPUT = "IMAGE", "LABELS"
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
# the type of the model's input and output tensors by its precision: an int8 model of
# tools/quantize.py (QDQ) takes and gives float32 like the float model it came from
DATA_TYPES = {"fp32": "TYPE_FP32", "fp16": "TYPE_FP16", "int8": "TYPE_FP32"}
TRT_WORKSPACE_BYTES = 1 << 30


@dataclass
class ServingOptions:
    """How the repository serves the model: batching, instances and the TensorRT accelerator."""

    name: str = "ppq2l"
    max_batch_size: int = 32
    preferred_batch_sizes: Sequence[int] = (8, 16, 32)
    max_queue_delay_us: int = 500
    kind: str = "gpu"
    instances: int = 1
    python_instances: int = 2
    tensorrt: bool = False
    tensorrt_fp16: bool = False
    python_env: str | None = None
    names: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"--name must be letters, digits, '_' or '-', got {self.name!r}")
        self.max_batch_size = integer(self.max_batch_size, "--max_batch_size", minimum=1)
        self.max_queue_delay_us = integer(self.max_queue_delay_us, "--max_queue_delay_us", minimum=0)
        self.instances = integer(self.instances, "--instances", minimum=1)
        self.python_instances = integer(self.python_instances, "--python_instances", minimum=1)
        sizes = [integer(size, "--preferred_batch_sizes", minimum=1) for size in self.preferred_batch_sizes]
        too_large = [size for size in sizes if size > self.max_batch_size]
        if too_large:
            raise ConfigError(f"--preferred_batch_sizes {too_large} exceed --max_batch_size "
                              f"{self.max_batch_size}")
        self.preferred_batch_sizes = sorted(set(sizes))
        if self.kind not in KINDS:
            raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.tensorrt and self.kind != "gpu":
            raise ConfigError("--tensorrt accelerates GPU instances; it needs --kind gpu")
        if self.tensorrt_fp16 and not self.tensorrt:
            raise ConfigError("--tensorrt_fp16 sets the TensorRT precision; add --tensorrt")
        self.names = {"preprocess": f"{self.name}_preprocess", "model": f"{self.name}_onnx",
                      "postprocess": f"{self.name}_postprocess", "ensemble": self.name}


def quoted(text: str) -> str:
    """A protobuf text-format string literal (JSON escaping is a valid subset of it)."""
    return json.dumps(text)


def tensor(name: str, data_type: str, dims: Sequence[int]) -> str:
    return (f"  {{ name: {quoted(name)} data_type: {data_type} "
            f"dims: [ {', '.join(str(int(value)) for value in dims)} ] }}")


def tensors(key: str, entries: Sequence[str]) -> str:
    return f"{key} [\n" + ",\n".join(entries) + "\n]\n"


def header(name: str, backend_line: str, max_batch_size: int) -> str:
    return f"name: {quoted(name)}\n{backend_line}\nmax_batch_size: {max_batch_size}\n"


def image_dims(metadata: dict) -> list[int]:
    """[3, H, W] of the model input; -1 for the sides of a dynamic-size export."""
    return [3, -1, -1] if metadata["dynamic_spatial"] else [3, *metadata["input_size"]]


def onnx_config(metadata: dict, options: ServingOptions) -> str:
    """The ONNX model on the onnxruntime backend, with dynamic batching and its instances."""
    data_type = DATA_TYPES[metadata["precision"]]
    text = header(options.names["model"], 'backend: "onnxruntime"', options.max_batch_size)
    text += tensors("input", [tensor(metadata["input_name"], data_type, image_dims(metadata))])
    text += tensors("output", [tensor(metadata["output_name"], data_type, [metadata["class_num"]])])
    text += (f"dynamic_batching {{\n  preferred_batch_size: [ "
             f"{', '.join(map(str, options.preferred_batch_sizes))} ]\n"
             f"  max_queue_delay_microseconds: {options.max_queue_delay_us}\n}}\n")
    text += (f"instance_group [ {{ count: {options.instances} kind: {KINDS[options.kind]} }} ]\n")
    if options.tensorrt:
        precision = "FP16" if options.tensorrt_fp16 else "FP32"
        text += ("optimization { execution_accelerators { gpu_execution_accelerator: [ {\n"
                 '  name: "tensorrt"\n'
                 f'  parameters {{ key: "precision_mode" value: "{precision}" }}\n'
                 f'  parameters {{ key: "max_workspace_size_bytes" value: "{TRT_WORKSPACE_BYTES}" }}\n'
                 "} ] } }\n")
    return text


def python_config(name: str, inputs: list[str], outputs: list[str], options: ServingOptions) -> str:
    """A python-backend model on CPU instances (decoding and thresholds run on the CPU)."""
    text = header(name, 'backend: "python"', options.max_batch_size)
    text += tensors("input", inputs) + tensors("output", outputs)
    text += f"instance_group [ {{ count: {options.python_instances} kind: KIND_CPU }} ]\n"
    if options.python_env:  # a Python environment (folder or conda-pack archive) holding ppq2l
        text += (f"parameters: {{ key: \"EXECUTION_ENV_PATH\" value: {{ string_value: "
                 f"{quoted(options.python_env)} }} }}\n")
    return text


def preprocess_config(metadata: dict, options: ServingOptions) -> str:
    """Encoded image bytes [1] per image -> the model input [3, H, W]."""
    return python_config(options.names["preprocess"], [tensor(IMAGE_INPUT, "TYPE_STRING", [1])],
                         [tensor(metadata["input_name"], DATA_TYPES[metadata["precision"]],
                                 image_dims(metadata))], options)


def postprocess_config(metadata: dict, options: ServingOptions) -> str:
    """Scores [C] per image -> one JSON record [1] per image."""
    return python_config(options.names["postprocess"],
                         [tensor(metadata["output_name"], DATA_TYPES[metadata["precision"]],
                                 [metadata["class_num"]])],
                         [tensor(LABELS_OUTPUT, "TYPE_STRING", [1])], options)


def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    maps = "".join(f" input_map {{ key: {quoted(key)} value: {quoted(value)} }}"
                   for key, value in inputs.items())
    maps += "".join(f" output_map {{ key: {quoted(key)} value: {quoted(value)} }}"
                    for key, value in outputs.items())
    return f"  {{ model_name: {quoted(model)} model_version: -1{maps} }}"


def ensemble_config(metadata: dict, options: ServingOptions) -> str:
    """IMAGE (encoded bytes) -> LABELS (JSON records). The scores stay internal: an ensemble
    output that also feeds a later step is dropped when a client asks for the other outputs only,
    and the request then fails ("unexpected deadlock"); NAME_onnx serves the raw scores."""
    names, model_input, model_output = options.names, metadata["input_name"], metadata["output_name"]
    text = header(names["ensemble"], 'platform: "ensemble"', options.max_batch_size)
    text += tensors("input", [tensor(IMAGE_INPUT, "TYPE_STRING", [1])])
    text += tensors("output", [tensor(LABELS_OUTPUT, "TYPE_STRING", [1])])
    steps = [step(names["preprocess"], {IMAGE_INPUT: IMAGE_INPUT}, {model_input: "preprocessed"}),
             step(names["model"], {model_input: "preprocessed"}, {model_output: "model_scores"}),
             step(names["postprocess"], {model_output: "model_scores"}, {LABELS_OUTPUT: LABELS_OUTPUT})]
    return text + "ensemble_scheduling { step [\n" + ",\n".join(steps) + "\n] }\n"
