"""Writing the Triton model repository of an exported model folder (model.onnx + inference.yml):

    OUTPUT/NAME/config.pbtxt, NAME/1/                     the ensemble: IMAGE bytes -> LABELS
    OUTPUT/NAME_preprocess/config.pbtxt, 1/model.py, 1/inference.yml
    OUTPUT/NAME_onnx/config.pbtxt, 1/model.onnx
    OUTPUT/NAME_postprocess/config.pbtxt, 1/model.py, 1/inference.yml

The description is read from the ONNX file's own metadata (what the deploy predictor reads), so
the repository cannot pair a model with another model's preprocessing. The repository is built in
a hidden folder beside OUTPUT and renamed into place when complete; an existing OUTPUT is
replaced only with `overwrite`."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ppq2l.errors import ConfigError
from ppq2l.export.metadata import DESCRIPTION_FILE, MODEL_FILE, read_model_description, write_inference_yml
from ppq2l.export.triton import model_config
from ppq2l.export.triton.model_config import ServingOptions
from ppq2l.utils.atomic_write import OutputError, describe_os_error, process_alive, write_text_atomic

VERSION = "1"
MODEL_PY = '''"""Triton python-backend model `{name}` of a ppq2l repository (tools/export_triton.py).
Needs ppq2l in the server's Python: pip install --no-deps ppq2l, and
deploy/triton/requirements-server.txt (see deploy/README.md)."""
from ppq2l.export.triton.python_models import {cls} as TritonPythonModel  # noqa: F401
'''


def read_exported_model(model_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The model.onnx of an export folder (or the file itself) and the description stored in it,
    read from the file with onnx (no onnxruntime session is built)."""
    from onnx import TensorProto

    from ppq2l.export.onnx_runtime import resolve_model_path

    path = resolve_model_path(model_dir)
    model, metadata = read_model_description(path)
    weights = {initializer.name for initializer in model.graph.initializer}
    inputs = [item.name for item in model.graph.input if item.name not in weights]
    outputs = [item.name for item in model.graph.output]
    if inputs != [metadata["input_name"]] or metadata["output_name"] not in outputs:
        raise ConfigError(f"{path}: its inputs {inputs} and outputs {outputs} do not match its "
                          f"description ({metadata['input_name']} -> {metadata['output_name']}); "
                          f"re-export it")
    if metadata["precision"] not in model_config.DATA_TYPES:
        raise ConfigError(f"{path}: precision {metadata['precision']!r} has no Triton tensor type "
                          f"(known: {', '.join(model_config.DATA_TYPES)}); re-export it")
    expected = {"TYPE_FP32": TensorProto.FLOAT, "TYPE_FP16": TensorProto.FLOAT16}[
        model_config.DATA_TYPES[metadata["precision"]]]
    served = (metadata["input_name"], metadata["output_name"])
    for item in (*model.graph.input, *model.graph.output):
        found = item.type.tensor_type.elem_type
        if item.name in served and found != expected:
            raise ConfigError(f"{path}: tensor {item.name} is {TensorProto.DataType.Name(found)}, not "
                              f"{TensorProto.DataType.Name(expected)} as its precision "
                              f"{metadata['precision']!r} says; re-export it")
    return path, metadata


def model_files(path: Path, metadata: dict, options: ServingOptions) -> dict[str, str | Path]:
    """Every file of the repository: relative path -> its text, or the Path of a file to copy."""
    names = options.names
    files: dict[str, str | Path] = {
        f"{names['model']}/config.pbtxt": model_config.onnx_config(metadata, options),
        f"{names['model']}/{VERSION}/{MODEL_FILE}": path,
        f"{names['ensemble']}/config.pbtxt": model_config.ensemble_config(metadata, options),
        f"{names['preprocess']}/config.pbtxt": model_config.preprocess_config(metadata, options),
        f"{names['postprocess']}/config.pbtxt": model_config.postprocess_config(metadata, options),
    }
    for key, cls in (("preprocess", "PreprocessModel"), ("postprocess", "PostprocessModel")):
        files[f"{names[key]}/{VERSION}/model.py"] = MODEL_PY.format(name=names[key], cls=cls)
    return files


def check_target(output: Path, overwrite: bool) -> None:
    """An existing OUTPUT is replaced only with `overwrite`, and only when it is a folder."""
    if output.exists() and not output.is_dir():
        raise OutputError(f"--output: {output} is a file, not a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise OutputError(f"--output: {output} is not empty; choose another folder or add "
                          f"--overwrite to replace it")


def remove_stale_builds(parent: Path, name: str) -> None:
    """Delete hidden build folders of OUTPUT left by a killed run (their process is gone)."""
    for entry in parent.glob(f".{name}.build*"):
        suffix = entry.name.rsplit(".build", 1)[1]
        if suffix.isdigit() and not process_alive(int(suffix)):
            shutil.rmtree(entry, ignore_errors=True)


def write_repository(model_dir: str | os.PathLike, output: str | os.PathLike,
                     options: ServingOptions, overwrite: bool = False) -> dict[str, Any]:
    """Build the repository of the exported model in `model_dir` at `output`; returns a summary."""
    output = Path(output).expanduser()
    check_target(output, overwrite)
    path, metadata = read_exported_model(model_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(output.parent, output.name)
    build = output.parent / f".{output.name}.build{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    try:
        for relative, content in model_files(path, metadata, options).items():
            target = build / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                write_text_atomic(target, content)
        for key in ("preprocess", "postprocess"):
            write_inference_yml(build / options.names[key] / VERSION / DESCRIPTION_FILE, metadata)
        (build / options.names["ensemble"] / VERSION).mkdir(parents=True, exist_ok=True)
        replace_folder(build, output)
    except OSError as error:
        raise OutputError(f"cannot write the repository {output}: {describe_os_error(error)}") from None
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return {"repository": str(output), "models": dict(options.names), "source": str(path),
            "precision": metadata["precision"], "class_num": metadata["class_num"]}


def replace_folder(build: Path, output: Path) -> None:
    """Rename the finished `build` to `output`; an earlier `output` is moved aside first and
    deleted after, so `output` is always either the old or the new repository."""
    previous = output.parent / f".{output.name}.previous{os.getpid()}"
    if output.exists():
        os.replace(output, previous)
    try:
        os.replace(build, output)
    except OSError:
        if previous.exists():
            os.replace(previous, output)
        raise
    shutil.rmtree(previous, ignore_errors=True)
