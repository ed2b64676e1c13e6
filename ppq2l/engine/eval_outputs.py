"""What tools/eval.py writes beside eval_metrics.json: the scores (scores.npz, Eval.scores), so
that calibration and reports need no second pass of the model, and with Eval.report the report."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppq2l.calibration.run import eval_scores_path, section_settings
from ppq2l.calibration.scores_file import Scores, encode_targets, save_scores, scores_source
from ppq2l.utils.atomic_write import prepare_output_file


@dataclass
class EvalOutputs:
    """The checked destinations: the scores file and the report folder (None: no report)."""

    scores_path: Path
    report_folder: Path | None


def prepare_eval_outputs(config: dict) -> EvalOutputs:
    """Check the destinations (and matplotlib for a report) before the model runs."""
    scores_path = prepare_output_file(eval_scores_path(config), "Eval.scores")
    report = section_settings(config, "Eval")["report"]
    if report is None:
        return EvalOutputs(scores_path, None)
    from ppq2l.report.from_config import prepare_report_folder

    return EvalOutputs(scores_path, prepare_report_folder(report))


def write_eval_outputs(outputs: EvalOutputs, config: dict, scores: np.ndarray, targets: np.ndarray,
                       image_paths: list[str], names: list[str] | None, weights: str,
                       results: dict[str, Any], logger: logging.Logger) -> None:
    """Save the scores and, when asked for, write the report."""
    source = scores_source(weights, "DataLoader.Eval", config["DataLoader"]["Eval"]["dataset"], config)
    data = Scores(scores, encode_targets(targets), list(image_paths), names, source,
                  outputs.scores_path)
    save_scores(outputs.scores_path, data)
    logger.info("saved the scores to %s", outputs.scores_path)
    if outputs.report_folder is not None:
        from ppq2l.report.from_config import report_from_config

        report_from_config(config, data, outputs.report_folder, results, logger)
