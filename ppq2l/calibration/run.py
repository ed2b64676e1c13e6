"""tools/calibrate.py: per-class thresholds for a checkpoint, fitted by the `Calibrate.policy` on
held-out scores, with honest figures: thresholds are scored on images they were not fitted on,
either `Calibrate.dataset` (fit there, score on DataLoader.Eval) or k-fold cross-fitting on
DataLoader.Eval (the default). Scores come from a saved scores.npz when one belongs to this
checkpoint and data, otherwise from one pass of the model (then saved for the next time)."""
from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from ppq2l.calibration.policy import parse_policy
from ppq2l.calibration.scores_file import (
    FILE_NAME,
    Scores,
    encode_targets,
    load_scores,
    same_source,
    save_scores,
    scores_source,
)
from ppq2l.calibration.search import Counts, ThresholdFit, counts_at, cross_fit, fit_thresholds
from ppq2l.calibration.thresholds_file import FILE_NAME as THRESHOLDS_FILE
from ppq2l.calibration.thresholds_file import name_difference, write_thresholds
from ppq2l.config import CALIBRATE_DEFAULTS, EVAL_DEFAULTS
from ppq2l.errors import ConfigError, DataError, Ppq2lError
from ppq2l.utils.atomic_write import prepare_output_file

BASELINE = 0.5
CALIBRATION_SCORES = "scores_calibrate.npz"


def section_settings(config: dict, name: str) -> dict:
    """A tool section with its defaults (a config may lack the section)."""
    defaults = {"Calibrate": CALIBRATE_DEFAULTS, "Eval": EVAL_DEFAULTS}[name]
    return {**copy.deepcopy(defaults), **(config.get(name) or {})}


def eval_scores_path(config: dict) -> Path:
    """Where tools/eval.py writes the scores of DataLoader.Eval: Eval.scores or OUT/scores.npz."""
    chosen = section_settings(config, "Eval")["scores"]
    return Path(chosen or Path(config["Global"]["output_dir"]) / FILE_NAME).expanduser()


def config_label_names(config: dict, class_num: int) -> list[str] | None:
    """The class names of Infer.PostProcess.class_id_map_file, or None without one."""
    from ppq2l.data.label_map import read_label_map

    label_file = ((config.get("Infer") or {}).get("PostProcess") or {}).get("class_id_map_file")
    return read_label_map(label_file, class_num) if label_file else None


class ModelScorer:
    """Scores data sets with Global.pretrained_model, building the model on first use."""

    def __init__(self, context: Any, weights: str) -> None:
        self.context, self.weights, self.model = context, weights, None

    def __call__(self, mode: str, section: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
        from ppq2l.data import build_dataloader
        from ppq2l.engine.components import build_model_for_run
        from ppq2l.engine.evaluator import check_finite_scores, predict_dataset

        context = self.context
        try:
            loader = build_dataloader(section, mode, context.class_num,
                                      int(context.config["Global"]["seed"]),
                                      context.device.type == "cuda")
        except Ppq2lError as error:
            raise renamed(error, mode) from None
        if self.model is None:
            self.model = build_model_for_run(context, self.weights)
        scores, targets, _ = predict_dataset(self.model, loader, context.device, context.precision,
                                             context.channels_last, desc=mode.lower())
        check_finite_scores(scores, loader.dataset.image_paths, self.weights)
        return scores, targets, list(loader.dataset.image_paths)


def renamed(error: Ppq2lError, mode: str) -> Ppq2lError:
    """A loader error of the Calibrate.dataset loader under the keys the user wrote: its dataset
    keys are Calibrate.dataset, the rest comes from DataLoader.Eval."""
    if mode == "Eval":
        return error
    text = str(error).replace(f"DataLoader.{mode}.dataset", "Calibrate.dataset")
    return type(error)(text.replace(f"DataLoader.{mode}", "DataLoader.Eval"))


def obtain_scores(config: dict, scorer: ModelScorer, mode: str, section: dict, path: Path,
                  names: list[str] | None, logger: logging.Logger) -> Scores:
    """The scores of `section`'s data: those saved at `path` when they belong to this checkpoint
    and data set config, otherwise a pass of the model, then saved at `path`."""
    from ppq2l.engine.distributed import is_main_process

    data_key = "DataLoader.Eval" if mode == "Eval" else "Calibrate.dataset"
    wanted = scores_source(scorer.weights, data_key, section["dataset"], config)
    if path.is_file():
        try:
            saved = load_scores(path, data_key)
        except Ppq2lError as error:
            logger.warning("cannot reuse %s (%s); scoring %s again", path, error, data_key)
        else:
            if same_source(saved.source, wanted):
                logger.info("reusing the scores of %s in %s (%d images)", data_key, path,
                            saved.num_images)
                return with_known_labels(saved)
            logger.info("%s holds scores of another checkpoint or data set config; scoring %s",
                        path, data_key)
    scores, targets, image_paths = scorer(mode, section)
    result = Scores(scores, encode_targets(targets), image_paths, names, wanted, path)
    if is_main_process():
        save_scores(path, result)
        logger.info("saved the scores of %s to %s", data_key, path)
    return with_known_labels(result)


def calibration_section(config: dict, dataset: dict) -> dict:
    """The loader section of Calibrate.dataset: DataLoader.Eval with its dataset keys overlaid."""
    from ppq2l.engine.components import require_section

    section = copy.deepcopy(require_section(config, "DataLoader.Eval"))
    section["dataset"] = {**section["dataset"], **copy.deepcopy(dataset)}
    return section


def _value(number: Any) -> float | None:
    """A JSON number, None for NaN (undefined: nothing predicted, no positives)."""
    number = float(number)
    return None if math.isnan(number) else number


def class_entries(fit: ThresholdFit, held_out: Counts, names: list[str] | None) -> list[dict]:
    """One thresholds.json entry per class."""
    entries = []
    for index, threshold in enumerate(fit.thresholds):
        entry = {"name": names[index] if names else None, "threshold": float(threshold)}
        for key, counts in (("fitted", fit.counts), ("held_out", held_out)):
            entry[key] = {"precision": _value(counts.precision[index]),
                          "recall": _value(counts.recall[index]), "f1": _value(counts.f1[index]),
                          "support": int(counts.support[index]),
                          "predicted": int(counts.predicted[index])}
        entry["fallback"] = bool(fit.fallback[index])
        entry["target_reached"] = bool(fit.reached[index])
        entries.append(entry)
    return entries


def summary_of(counts: Counts) -> dict[str, float | None]:
    """Macro/micro F1 (and micro P/R) of some counts, JSON-safe."""
    return {key: _value(value) for key, value in counts.summary().items()}


def format_table(fit: ThresholdFit, held_out: Counts, names: list[str], scope: str = "per_class") -> str:
    """The per-class thresholds and their fitted and held-out precision/recall/F1, as text; the
    note says `pooled` for a class that takes the pooled threshold (too few positives: `fallback`)."""
    def cell(value: float) -> str:
        return "    -" if math.isnan(value) else f"{value:5.3f}"

    width = max(8, *(len(name) for name in names))
    lines = [f"{'class'.ljust(width)}  thresh  fit P  fit R fit F1   ho P   ho R  ho F1  support  note"]
    for index, name in enumerate(names):
        note = ("pooled" if scope == "pooled" else "fallback") if fit.fallback[index] else ""
        if not fit.reached[index]:
            note = (note + " target not reached").strip()
        values = (fit.counts.precision, fit.counts.recall, fit.counts.f1, held_out.precision,
                  held_out.recall, held_out.f1)
        lines.append(f"{name.ljust(width)}  {fit.thresholds[index]:6.4f} "
                     + " ".join(f" {cell(array[index])}" for array in values)
                     + f"  {int(fit.counts.support[index]):7d}  {note}")
    return "\n".join(lines)


def format_summary(summary: dict[str, dict], held_out_method: str) -> str:
    """Macro/micro F1 at 0.5, on the fitted data and held out, one line each, in percent."""
    rows = [(f"threshold {BASELINE} for every class", summary["baseline"]),
            ("calibrated, on the images fitted on (optimistic)", summary["fitted"]),
            (f"calibrated, held out ({held_out_method})", summary["held_out"])]
    width = max(len(label) for label, _ in rows)

    def figure(value: float | None) -> str:
        return "   n/a" if value is None else f"{value * 100:6.2f}"

    return "\n".join([f"{''.ljust(width)}  macro-F1 / micro-F1 (%)"]
                     + [f"{label.ljust(width)}  {figure(entry['macro_f1'])} / "
                        f"{figure(entry['micro_f1'])}" for label, entry in rows])


def fit_and_hold_out(config: dict, settings: dict, evaluation: Scores, scorer: ModelScorer | None,
                     output: Path, names: list[str] | None, logger: logging.Logger
                     ) -> tuple[Scores, ThresholdFit, Counts, str, dict]:
    """(the scores fitted on, the fit, held-out counts on DataLoader.Eval, how they were held out,
    the scope chosen with the held-out macro-F1 of each scope tried)."""
    policy, minimum = parse_policy(settings["policy"]), settings["min_positives"]
    if settings["dataset"] is not None:
        fitted_on = obtain_scores(config, scorer, "Calibrate",
                                  calibration_section(config, settings["dataset"]),
                                  output.parent / CALIBRATION_SCORES, names, logger)
        method = "fitted on Calibrate.dataset, scored on DataLoader.Eval"

        def attempt(pooled: bool) -> tuple[ThresholdFit, Counts]:
            fit = fit_thresholds(fitted_on.scores, fitted_on.targets, policy, minimum, pooled)
            return fit, counts_at(evaluation.scores, evaluation.targets, fit.thresholds)
    else:
        fitted_on, seed = evaluation, int(config["Global"]["seed"])
        method = f"{settings['folds']}-fold cross-fitting on DataLoader.Eval"

        def attempt(pooled: bool) -> tuple[ThresholdFit, Counts]:
            fit = fit_thresholds(evaluation.scores, evaluation.targets, policy, minimum, pooled)
            return fit, cross_fit(evaluation.scores, evaluation.targets, policy, minimum,
                                  settings["folds"], seed, pooled)
    scope = settings["scope"]
    tried = ("per_class", "pooled") if scope == "auto" and policy.kind == "f1" else \
        ("pooled",) if scope == "pooled" else ("per_class",)
    results = {name: attempt(name == "pooled") for name in tried}
    macro_f1 = {name: _value(counts.summary()["macro_f1"]) for name, (_, counts) in results.items()}
    chosen = tried[0]
    if len(tried) == 2 and macro_f1["pooled"] is not None and \
            (macro_f1["per_class"] is None or macro_f1["pooled"] > macro_f1["per_class"]):
        chosen = "pooled"
    fit, held_out = results[chosen]
    return fitted_on, fit, held_out, method, {"scope": chosen, "held_out_macro_f1": macro_f1}


def with_known_labels(data: Scores) -> Scores:
    """`data`, unless every label in it is unknown: a DataError then (nothing to fit on)."""
    if data.targets.size and data.num_unknown_labels == data.targets.size:
        where = data.path or data.source.get("list_file") or data.source.get("data")
        raise DataError(f"every label in the scores of {where} is unknown (-1): thresholds need images "
                        f"with known labels")
    return data


def thresholds_document(fit: ThresholdFit, held_out: Counts, fitted_on: Scores, evaluation: Scores,
                        method: str, seed: int, names: list[str] | None) -> dict[str, Any]:
    """The content of thresholds.json."""
    shown = names or [str(index) for index in range(len(fit.thresholds))]
    return {
        "policy": str(fit.policy), "min_positives": fit.min_positives,
        "global_threshold": fit.global_threshold, "global_target_reached": fit.global_reached,
        "fitted_on": {key: fitted_on.source.get(key) for key in
                      ("data", "list_file", "checkpoint", "checkpoint_fingerprint")}
        | {"num_images": fitted_on.num_images, "num_unknown_labels": fitted_on.num_unknown_labels},
        "held_out": {"method": method, "seed": seed, "list_file": evaluation.source.get("list_file"),
                     "num_images": evaluation.num_images, "num_unknown_labels": evaluation.num_unknown_labels},
        "summary": {"baseline": summary_of(counts_at(evaluation.scores, evaluation.targets, BASELINE)),
                    "fitted": summary_of(fit.counts), "held_out": summary_of(held_out)},
        "fallback_classes": [shown[i] for i in np.flatnonzero(fit.fallback)],
        "unreachable_classes": [shown[i] for i in np.flatnonzero(~fit.reached)],
        "classes": class_entries(fit, held_out, names),
    }


def calibrate_from_config(config: dict) -> dict[str, Any]:
    """Fit, check and write the thresholds; returns the thresholds.json document and its path."""
    from ppq2l.engine.components import require_section, start_run
    from ppq2l.engine.distributed import is_main_process

    settings = section_settings(config, "Calibrate")
    parse_policy(settings["policy"])  # a config given as a dict skipped get_config's check
    output = prepare_output_file(settings["output"] or Path(config["Global"]["output_dir"])
                                 / THRESHOLDS_FILE, "Calibrate.output")
    needs_model = settings["scores"] is None or settings["dataset"] is not None
    weights = str(require_section(config, "Global.pretrained_model")) if needs_model else None
    context = start_run(config, "calibrate.log")
    logger = context.logger
    names = config_label_names(config, context.class_num)
    scorer = ModelScorer(context, weights) if needs_model else None
    if settings["scores"] is not None:
        evaluation = with_known_labels(load_scores(settings["scores"], "Calibrate.scores"))
        logger.info("scores of DataLoader.Eval from %s (%d images)", evaluation.path,
                    evaluation.num_images)
    else:
        evaluation = obtain_scores(config, scorer, "Eval", require_section(config, "DataLoader.Eval"),
                                   eval_scores_path(config), names, logger)
    if evaluation.scores.shape[1] != context.class_num:
        raise ConfigError(f"{evaluation.path} holds scores of {evaluation.scores.shape[1]} classes "
                          f"but Arch.class_num is {context.class_num}")
    if names and evaluation.class_names and names != evaluation.class_names:
        raise ConfigError(f"{evaluation.path} was scored with other class names than "
                          f"Infer.PostProcess.class_id_map_file: "
                          f"{name_difference(evaluation.class_names, names)}")
    names = names or evaluation.class_names
    fitted_on, fit, held_out, method, scope = fit_and_hold_out(config, settings, evaluation, scorer,
                                                               output, names, logger)
    for data in (fitted_on,) if fitted_on is evaluation else (fitted_on, evaluation):
        if data.num_unknown_labels:
            logger.info("%d of %d labels of %s are unknown: each class's thresholds and counts use "
                        "the images whose label for it is known", data.num_unknown_labels,
                        data.targets.size, data.source.get("list_file") or data.source.get("data"))
    document = thresholds_document(fit, held_out, fitted_on, evaluation, method,
                                   int(config["Global"]["seed"]), names)
    document["scope"] = {"setting": settings["scope"], **scope}
    if len(scope["held_out_macro_f1"]) == 2:
        shown = {name: "-" if value is None else f"{100 * value:.2f}"
                 for name, value in scope["held_out_macro_f1"].items()}
        logger.info("Calibrate.scope auto: held-out macro-F1 %s with a threshold per class, %s with one "
                    "pooled threshold for every class: %s", shown["per_class"], shown["pooled"],
                    "one pooled threshold" if scope["scope"] == "pooled" else "a threshold per class")
    logger.info("thresholds (policy %s, fitted on %d images of %s; held out: %s):\n%s", fit.policy,
                fitted_on.num_images, fitted_on.source.get("data"), method,
                format_table(fit, held_out, names or [str(i) for i in range(len(fit.thresholds))],
                             scope["scope"]))
    if scope["scope"] == "pooled":
        logger.info("every class takes the pooled threshold %.4f", fit.global_threshold)
    elif document["fallback_classes"]:
        logger.info("fewer than %d positives, so the pooled threshold %.4f: %s", fit.min_positives,
                    fit.global_threshold, ", ".join(document["fallback_classes"]))
    if document["unreachable_classes"]:
        logger.warning("%s is not reached on the fitted data by %s; their threshold is the one of "
                       "the best %s they reach (see the table)", fit.policy,
                       ", ".join(document["unreachable_classes"]), fit.policy.kind)
    logger.info("macro/micro F1 on %d images of DataLoader.Eval:\n%s", evaluation.num_images,
                format_summary(document["summary"], method))
    if is_main_process():
        write_thresholds(output, document)
        logger.info("wrote %s", output)
    return {"path": str(output), **document}
