"""Load a PaddleClas-shaped YAML config, apply `-o Key.sub=value` overrides and validate it.

Rules for overrides (also in the README):
- A path walks mappings by key and lists by index (`transform_ops.1.ResizeImage.size`); a list of
  one-key mappings (`- ResizeImage: {...}`) may also be addressed by that key
  (`transform_ops.ResizeImage.size`).
- The value is parsed with `yaml.safe_load`, so `1e-4`, `[448, 448]`, `true` and `null` mean the same
  as in the file; nothing is ever evaluated as code.
- A path must exist, with two exceptions: a keyword may be added to a component (a mapping with a
  `name` key, or the keyword mapping of a `- Op: {...}` list entry), where the registry later checks
  it against the constructor; and a whole section named in SECTIONS may be added (`-o EMA={}`).
  The keys of the sections that only tools read (Calibrate, Eval) may be set when the file has
  no such section: `-o Calibrate.policy=f1` works on any config.
"""
from __future__ import annotations

import argparse
import copy
import io
import os
import re
from pathlib import Path
from typing import Any, Sequence

import yaml

from ppq2l.checks import choice, did_you_mean, flag, integer, number
from ppq2l.errors import ConfigError
from ppq2l.utils.atomic_write import write_text_atomic

SECTIONS = ("Global", "Arch", "Loss", "Metric", "Optimizer", "DataLoader", "Infer", "EMA", "AMP",
            "Calibrate", "Eval")
REQUIRED_SECTIONS = ("Global", "Arch")

GLOBAL_DEFAULTS: dict[str, Any] = {
    "output_dir": "./output",
    "device": "auto",
    "seed": 42,
    "epochs": 1,
    "print_batch_step": 10,
    "save_interval": 0,  # > 0: also keep epoch_N.pth every N epochs
    "eval_during_train": True,
    "eval_interval": 1,
    "pretrained_model": None,
    "checkpoints": None,
    "image_shape": [3, 224, 224],
    "save_inference_dir": "./inference",
    "export_dynamic_spatial": False,  # ONNX export: height and width as dynamic axes too
    "export_fp16": False,  # ONNX export in float16 (needs CUDA)
    "export_attention": False,  # ONNX export with a second output: per-label maps [B, C, h, w]
    "early_stop_patience": 0,
    "early_stop_rule": "plateau",  # or query2label (the official main_mlc.py rule)
    "stop_epoch": 0,  # > 0: training ends after this epoch; the schedule still spans `epochs`
    "clip_grad_norm": None,
    "channels_last": False,
    "compile": False,  # torch.compile the training step's model (checkpoints keep plain keys)
    "deterministic": False,
    "num_threads": None,
    "update_freq": 1,  # accumulate gradients over N batches per optimizer step
    "sync_bn": False,  # multi-process runs: SyncBatchNorm across ranks
    "save_interval_steps": 0,  # > 0: also write latest.pth every N optimizer steps
    "skip_nonfinite_steps": 0,  # skip up to N NaN/Inf-loss batches before stopping
    "use_tensorboard": False,  # also write epoch scalars to output_dir/tensorboard
    "overwrite": False,  # train into an output_dir that holds an earlier run, deleting its files
}
EMA_DEFAULTS: dict[str, Any] = {"decay": 0.9997, "warmup": False}
AMP_DEFAULTS: dict[str, Any] = {"dtype": "float16", "init_scale": 65536.0,
                                "use_dynamic_loss_scaling": True,
                                "use_fp16_test": False}  # evaluation and inference in float32
# tools/calibrate.py: per-class thresholds (README, "Thresholds and the evaluation report")
CALIBRATE_DEFAULTS: dict[str, Any] = {
    "policy": "f1",  # f1 | precision:P | recall:R | fixed:T
    "min_positives": 5,  # fewer positives: the class takes the threshold of all classes pooled
    "scope": "auto",  # per_class | pooled (one threshold for all) | auto (f1: the better held out)
    "folds": 5,  # k-fold cross-fitting on DataLoader.Eval for the held-out figures
    "dataset": None,  # held-out data to fit on (keys over DataLoader.Eval.dataset) instead
    "scores": None,  # a scores.npz to fit on instead of running the model
    "output": None,  # the thresholds.json to write; default Global.output_dir/thresholds.json
}
INFER_KEYS = ("infer_imgs", "batch_size", "transforms", "PostProcess", "visualize", "save_path",
              "explain", "explain_dir", "explain_top_k")
# Per-label maps with tools/infer.py: off, into output_dir/explain, the 3 best labels when none fires.
INFER_DEFAULTS: dict[str, Any] = {"explain": False, "explain_dir": None, "explain_top_k": 3}
# tools/eval.py extras (tools/report.py reads report and scores too); pointing_game needs boxes:
# a COCO json (null: found next to the images).
EVAL_DEFAULTS: dict[str, Any] = {
    "pointing_game": False, "pointing_game_annotations": None,
    "report": None,  # a folder: write report.html, per_class.csv and the figures there
    "scores": None,  # the scores.npz eval writes and report reads; default Global.output_dir
}
# A section that changes nothing by being present, so an override may create it.
ON_DEMAND_SECTIONS = ("Calibrate", "Eval")
LOSS_KEYS = ("Train", "Eval")
AMP_DTYPES = ("float16", "bfloat16")
EARLY_STOP_RULES = ("plateau", "query2label")
SECTION_DEFAULTS = {"Global": GLOBAL_DEFAULTS, "EMA": EMA_DEFAULTS, "AMP": AMP_DEFAULTS,
                    "Calibrate": CALIBRATE_DEFAULTS, "Eval": EVAL_DEFAULTS}
ALWAYS_PRESENT = ("Global", "Eval")  # filled in even when a config leaves them out


class ConfigLoader(yaml.SafeLoader):
    """safe_load plus YAML 1.2 floats: `1e-4` is a number, not the string PyYAML makes of it."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+
                  |[-+]?(?:[0-9][0-9_]*)\.[0-9_]*
                  |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def parse_yaml(text: str, source: str = "<text>") -> Any:
    """Parse YAML text the one way the project does, in files and in overrides alike; errors
    point at `source` (the file name) and its line and column."""
    loader = ConfigLoader(text)  # a SafeLoader: builds plain data only
    loader.name = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _hint(key: str, valid: Sequence[str]) -> str:
    return f"{did_you_mean(key, valid)} Valid keys: {', '.join(map(str, valid)) or '(none)'}"


def unshared(node: Any) -> Any:
    """A copy in which no mapping or list appears twice: YAML anchors (`&ops` ... `*ops`) load as
    one shared object, and an override of one place must not change the other."""
    if isinstance(node, dict):
        return {key: unshared(value) for key, value in node.items()}
    if isinstance(node, list):
        return [unshared(item) for item in node]
    return node


def read_yaml(path: str | os.PathLike) -> Any:
    """Read a YAML file with safe_load; a missing file or a syntax error is a ConfigError."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; give the path of a .yaml file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return unshared(parse_yaml(path.read_text(encoding="utf-8"), str(path)))
    except UnicodeDecodeError as error:
        line = path.read_bytes()[:error.start].count(b"\n") + 1
        raise ConfigError(f"{path}, line {line}: not UTF-8 text ({error.reason}); save the config "
                          f"as UTF-8") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `Key.sub.0=value` into its path and its YAML-parsed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like Key.sub=value")
    path = key.strip().split(".")
    if any(part == "" for part in path):
        raise ConfigError(f"override {text!r} has an empty key in {key!r}")
    try:
        value = parse_yaml(raw, f"the value of {key.strip()}") if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: the value is not valid YAML: {error}") from None
    return path, value


def _list_index(node: list, part: str, where: str) -> int:
    if part.lstrip("-").isdigit():
        index = int(part)
        if not -len(node) <= index < len(node):
            raise ConfigError(f"{where}: index {index} is out of range; the list has {len(node)} "
                              f"entries (0..{len(node) - 1})")
        return index % len(node)
    names = [next(iter(item)) for item in node if isinstance(item, dict) and len(item) == 1]
    matches = [i for i, item in enumerate(node)
               if isinstance(item, dict) and len(item) == 1 and part in item]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"{where}: {part!r} appears {len(matches)} times in the list; "
                          f"use its index ({', '.join(map(str, matches))})")
    raise ConfigError(f"{where}: {part!r} is neither an index (0..{len(node) - 1}) nor an entry "
                      f"of this list.{_hint(part, names)}")


def _is_op_entry(node: Any, parent: Any) -> bool:
    """Whether `node` is a `- Op: {...}` entry: a one-key mapping inside a list."""
    return isinstance(node, dict) and len(node) == 1 and isinstance(parent, list)


def apply_override(config: dict, text: str) -> None:
    """Apply one `Key.sub=value` override to `config` in place (rules in the module docstring)."""
    path, value = parse_override(text)
    if path[0] not in config and len(path) > 1 and path[0] in ON_DEMAND_SECTIONS:
        config[path[0]] = copy.deepcopy(SECTION_DEFAULTS[path[0]])
    if path[0] not in config:
        if len(path) == 1 and path[0] in SECTIONS:
            config[path[0]] = value
            return
        present = [key for key in SECTIONS if key in config]
        raise ConfigError(f"override {text!r}: no section {path[0]!r} in the config."
                          f"{_hint(path[0], present)}")
    trail: list[Any] = [None, config]  # containers from the root down to the current node
    for depth, part in enumerate(path[:-1]):
        node, where = trail[-1], ".".join(path[:depth + 1])
        if isinstance(node, list):
            child = node[_list_index(node, part, where)]
            if not part.lstrip("-").isdigit():  # addressed by its op name: go to the keywords
                trail.append(child)
                if child[part] is None:
                    child[part] = {}
                child = child[part]
        elif isinstance(node, dict):
            if part not in node:
                raise ConfigError(f"override {text!r}: {where!r} does not exist."
                                  f"{_hint(part, list(node))}")
            child = node[part]
            if child is None and _is_op_entry(node, trail[-2]):
                child = node[part] = {}  # `- ToCHWImage:` has no keywords yet
        else:
            raise ConfigError(f"override {text!r}: {'.'.join(path[:depth])!r} is a value "
                              f"({node!r}), not a mapping or a list")
        trail.append(child)
    node, last, where = trail[-1], path[-1], ".".join(path)
    if isinstance(node, list):
        index = _list_index(node, last, where)
        if last.lstrip("-").isdigit():
            node[index] = value
        else:
            node[index][last] = value
    elif isinstance(node, dict):
        adds_keyword = "name" in node or _is_op_entry(trail[-2], trail[-3] if len(trail) > 2 else None)
        if last not in node and not adds_keyword:
            raise ConfigError(f"override {text!r}: {where!r} does not exist.{_hint(last, list(node))}")
        node[last] = value
    else:
        raise ConfigError(f"override {text!r}: {'.'.join(path[:-1])!r} is a value ({node!r}), "
                          f"not a mapping or a list")


def _fill_defaults(config: dict) -> None:
    for section, defaults in SECTION_DEFAULTS.items():
        if section in ALWAYS_PRESENT or section in config:
            if config.get(section) is None:
                config[section] = {}
            for key, value in defaults.items():
                config[section].setdefault(key, copy.deepcopy(value))
    if isinstance(config.get("Infer"), dict):  # so that -o Infer.explain=True finds its key
        for key, value in INFER_DEFAULTS.items():
            config["Infer"].setdefault(key, value)


def _check_type(where: str, value: Any, default: Any) -> None:
    """A value of the kind its default has (a None default or value is not checked)."""
    if default is None or value is None:
        return
    if isinstance(default, bool):
        flag(value, where)
    elif isinstance(default, int):
        integer(value, where)
    elif isinstance(default, float):
        number(value, where)
    elif not isinstance(value, type(default)):
        kind = "a string" if isinstance(default, str) else f"a {type(default).__name__}"
        raise ConfigError(f"{where} must be {kind}, got {value!r}")


def validate_config(config: dict) -> None:
    """Check section names, the keys and value types of Global/EMA/AMP, and the Infer and Loss
    keys."""
    if not isinstance(config, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(config).__name__}")
    for section in config:
        if section not in SECTIONS:
            raise ConfigError(f"unknown section {section!r}.{_hint(section, SECTIONS)}")
    for section in REQUIRED_SECTIONS:
        if not isinstance(config.get(section), dict):
            raise ConfigError(f"the config needs a {section!r} section (a mapping)")
    for section, defaults in SECTION_DEFAULTS.items():
        if section not in config:
            continue
        if not isinstance(config[section], dict):
            raise ConfigError(f"section {section!r} must be a mapping, got {config[section]!r}")
        for key, value in config[section].items():
            if key not in defaults:
                raise ConfigError(f"{section}.{key}: unknown key.{_hint(key, list(defaults))}")
            _check_type(f"{section}.{key}", value, defaults[key])
    choice(config["Global"]["early_stop_rule"], "Global.early_stop_rule", EARLY_STOP_RULES)
    integer(config["Global"]["stop_epoch"], "Global.stop_epoch", minimum=0,
            why="0: train every epoch of Global.epochs")
    if config.get("AMP"):
        choice(config["AMP"]["dtype"], "AMP.dtype", AMP_DTYPES)
    if config.get("EMA"):
        number(config["EMA"]["decay"], "EMA.decay", above=0.0, below=1.0)
    if config.get("Calibrate"):
        _validate_calibrate(config["Calibrate"])
    for key in ("report", "scores"):
        _optional_path((config.get("Eval") or {}).get(key), f"Eval.{key}")
    validate_explain_keys(config.get("Infer"))
    for section, keys in (("Infer", INFER_KEYS), ("Loss", LOSS_KEYS)):
        if config.get(section) is not None and not isinstance(config[section], dict):
            raise ConfigError(f"section {section!r} must be a mapping with keys "
                              f"{', '.join(keys)}, got {config[section]!r}")
        for key in (config.get(section) or {}):
            if key not in keys:
                raise ConfigError(f"{section}.{key}: unknown key.{_hint(key, keys)}")


def _optional_path(value: Any, where: str) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"{where} must be a path or null, got {value!r}")


def _validate_calibrate(section: dict) -> None:
    """The Calibrate keys: a policy that parses, counts in range, paths, a dataset mapping."""
    from ppq2l.calibration.policy import SCOPES, parse_policy

    parse_policy(section["policy"], "Calibrate.policy")
    integer(section["min_positives"], "Calibrate.min_positives", minimum=1,
            why="classes with fewer positives take the pooled threshold")
    integer(section["folds"], "Calibrate.folds", minimum=2, why="k-fold cross-fitting")
    choice(section["scope"], "Calibrate.scope", SCOPES)
    for key in ("scores", "output"):
        _optional_path(section[key], f"Calibrate.{key}")
    if section["dataset"] is not None and not isinstance(section["dataset"], dict):
        raise ConfigError(f"Calibrate.dataset must be a mapping of dataset keys (laid over "
                          f"DataLoader.Eval.dataset, e.g. {{cls_label_path: held_out_list.txt}}) "
                          f"or null, got {section['dataset']!r}")


def validate_explain_keys(infer: Any) -> None:
    """The types of the Infer keys of per-label maps (when the section has them)."""
    if not isinstance(infer, dict):
        return
    if infer.get("explain") is not None:
        flag(infer["explain"], "Infer.explain")
    integer(infer.get("explain_top_k"), "Infer.explain_top_k", minimum=1, allow_none=True,
            why="labels drawn when none passes the threshold")
    directory = infer.get("explain_dir")
    if directory is not None and not isinstance(directory, str):
        raise ConfigError(f"Infer.explain_dir must be a folder path or null (output_dir/explain), "
                          f"got {directory!r}")


BASE_KEY, DELETE_KEY = "_base_", "_delete_"


def merge_into(base: Any, override: Any) -> Any:
    """`override` laid over `base`: mappings merge key by key (recursively), anything else, lists
    included, replaces; a mapping with `_delete_: true` replaces the base's mapping whole."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    if override.get(DELETE_KEY) is True:
        return {key: copy.deepcopy(value) for key, value in override.items() if key != DELETE_KEY}
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key == DELETE_KEY:
            continue
        merged[key] = merge_into(merged[key], value) if key in merged else copy.deepcopy(value)
    return merged


def read_config_file(path: str | os.PathLike, chain: tuple[Path, ...] = ()) -> dict:
    """Read a config file with its `_base_` files (a path or a list of paths relative to the file
    naming them, merged in order, then the file's own keys on top; see `merge_into`)."""
    path = Path(path).expanduser()
    config = read_yaml(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    bases = config.pop(BASE_KEY, None)
    if bases is None:
        return config
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not bases or not all(isinstance(base, str) for base in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file path or a list of them, got {bases!r}")
    merged: dict = {}
    for base in bases:
        base_path = (path.parent / base).resolve()
        if base_path in chain or base_path == path.resolve():
            cycle = " -> ".join(str(item) for item in (*chain, path.resolve(), base_path))
            raise ConfigError(f"{path}: {BASE_KEY} files include each other: {cycle}")
        if not base_path.is_file():
            raise ConfigError(f"{path}: its {BASE_KEY} file {base} was not found (looked for "
                              f"{base_path}; the path is relative to {path.parent})")
        merged = merge_into(merged, read_config_file(base_path, (*chain, path.resolve())))
    return merge_into(merged, config)


def get_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict:
    """Load `path` (with its `_base_` files), fill defaults, apply overrides in order and
    validate the result."""
    config = read_config_file(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    validate_config_sections_only(config, path)
    _fill_defaults(config)
    for text in overrides:
        apply_override(config, text)
    _fill_defaults(config)  # a section added by an override gets its defaults too
    validate_config(config)
    return config


def validate_config_sections_only(config: dict, path: str | os.PathLike) -> None:
    """Reject unknown top-level sections before anything else, naming the file."""
    for section in config:
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section {section!r}.{_hint(section, SECTIONS)}")


class _PlainDumper(yaml.SafeDumper):
    """Writes a value every place it occurs instead of an anchor and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def config_to_yaml(config: dict) -> str:
    """The config as YAML text, in the order its sections were written, without anchors."""
    stream = io.StringIO()
    yaml.dump(config, stream, Dumper=_PlainDumper, sort_keys=False, default_flow_style=None,
              allow_unicode=True)
    return stream.getvalue()


def save_config(config: dict, path: str | os.PathLike) -> None:
    """Write the resolved config next to a run's outputs (temp file + rename)."""
    write_text_atomic(path, config_to_yaml(config))


def parse_args(argv: Sequence[str] | None = None, description: str = "") -> argparse.Namespace:
    """The command line every tool shares: `-c CONFIG.yaml` and repeatable `-o Key.sub=value`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-c", "--config", required=True, help="path to the YAML config")
    parser.add_argument("-o", "--override", action="append", default=[],
                        metavar="Key.sub=value", help="override a config value (repeatable)")
    return parser.parse_args(argv)
