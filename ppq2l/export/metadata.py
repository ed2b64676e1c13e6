"""The description an exported model carries (label names, thresholds, input size, preprocessing
and postprocessing) as one JSON document in the ONNX `metadata_props`, plus its `inference.yml`
copy. No torch, and onnx only in `read_model_description`: the deploy predictor reads the
description through onnxruntime."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from ppq2l.errors import ConfigError
from ppq2l.utils.atomic_write import write_text_atomic

# the files of an export folder: the model with its description inside, and the readable copy
MODEL_FILE, DESCRIPTION_FILE = "model.onnx", "inference.yml"
METADATA_KEY = "ppq2l"
METADATA_FORMAT = "ppq2l.multilabel"
METADATA_VERSION = 1
REQUIRED_FIELDS = ("format", "version", "class_num", "input_name", "output_name", "input_size",
                   "preprocess", "postprocess", "label_names", "threshold")


def build_metadata(*, arch: str, class_num: int, input_size: list[int], preprocess: list[dict],
                   postprocess: dict, label_names: list[str] | None, dynamic_spatial: bool,
                   precision: str, input_name: str = "images", output_name: str = "scores",
                   calibration: dict | None = None,
                   attention_output: str | None = None) -> dict[str, Any]:
    """The metadata dict of one exported model (plain JSON-serialisable data); `calibration`
    names the thresholds.json the per-class thresholds were taken from; `attention_output`
    names the per-label maps output [B, C, h, w] of a model exported with it (optional: models
    exported before it existed have none)."""
    threshold = postprocess.get("threshold", 0.5)
    threshold = list(threshold) if isinstance(threshold, list) else threshold  # no YAML alias
    optional = {"calibration": calibration} if calibration is not None else {}
    return {
        "format": METADATA_FORMAT,
        "version": METADATA_VERSION,
        "arch": arch,
        "class_num": int(class_num),
        "input_name": input_name,
        "output_name": output_name,
        "attention_output": attention_output,
        "output_activation": "sigmoid",
        "input_size": [int(value) for value in input_size],  # [height, width]
        "dynamic_spatial": bool(dynamic_spatial),
        "precision": precision,
        "preprocess": preprocess,
        "postprocess": postprocess,
        "label_names": label_names,
        "threshold": threshold,
        **optional,
    }


def encode_metadata(metadata: Mapping[str, Any]) -> str:
    """The metadata as the JSON text stored under METADATA_KEY."""
    return json.dumps(dict(metadata), sort_keys=False)


def validate_metadata(metadata: Any, source: str) -> dict[str, Any]:
    """Check that `metadata` is ours and complete; a ConfigError names `source` otherwise."""
    if not isinstance(metadata, dict) or metadata.get("format") != METADATA_FORMAT:
        raise ConfigError(f"{source}: not a ppq2l multi-label model description "
                          f"(expected format {METADATA_FORMAT!r}); export it with tools/export_model.py")
    missing = [field for field in REQUIRED_FIELDS if field not in metadata]
    if missing:
        raise ConfigError(f"{source}: the model description lacks {', '.join(missing)}; "
                          f"re-export the model with tools/export_model.py")
    if int(metadata["version"]) > METADATA_VERSION:
        raise ConfigError(f"{source}: description version {metadata['version']} is newer than this "
                          f"code understands ({METADATA_VERSION}); update ppq2l")
    return metadata


def decode_metadata(text: str, source: str) -> dict[str, Any]:
    """Parse the JSON text stored under METADATA_KEY and validate it."""
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{source}: the {METADATA_KEY!r} metadata is not valid JSON: {error}") from None
    return validate_metadata(metadata, source)


def attach_metadata(model_proto: Any, metadata: Mapping[str, Any]) -> None:
    """Store the metadata in an onnx ModelProto's metadata_props (replacing an earlier entry)."""
    for index in reversed(range(len(model_proto.metadata_props))):
        if model_proto.metadata_props[index].key == METADATA_KEY:
            del model_proto.metadata_props[index]
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, encode_metadata(metadata)


def metadata_from_properties(properties: Mapping[str, str], source: str) -> dict[str, Any]:
    """The metadata from a key -> value map such as onnxruntime's `custom_metadata_map`."""
    if METADATA_KEY not in properties:
        raise ConfigError(f"{source}: the ONNX model has no {METADATA_KEY!r} metadata (keys: "
                          f"{', '.join(properties) or 'none'}); it was not exported by "
                          f"tools/export_model.py, so its preprocessing is unknown")
    return decode_metadata(properties[METADATA_KEY], source)


def read_model_description(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """The onnx ModelProto at `path` (its graph's inputs, outputs, shapes and types; external
    weight files are not read) and the description stored in it, without starting a session;
    a ConfigError when the file is not an ONNX model."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except (OSError, DecodeError) as error:
        raise ConfigError(f"cannot read {path} as an ONNX model ({str(error)[:300]}); export it "
                          f"again with tools/export_model.py") from None
    properties = {entry.key: entry.value for entry in model.metadata_props}
    return model, metadata_from_properties(properties, os.fspath(path))


def write_inference_yml(path: str | os.PathLike, metadata: Mapping[str, Any]) -> Path:
    """Write the human-readable copy of the metadata next to the model."""
    return write_text_atomic(path, yaml.safe_dump(dict(metadata), sort_keys=False,
                                                  allow_unicode=True))


def read_inference_yml(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate an `inference.yml` written by write_inference_yml."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"inference description not found: {path}")
    try:
        metadata = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    return validate_metadata(metadata, str(path))
