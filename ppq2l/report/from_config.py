"""The report as tools/eval.py (`-o Eval.report=DIR`) and tools/report.py write it: the thresholds
in use are those of `Infer.PostProcess.threshold` for the scored checkpoint (with `auto`, its
calibrated thresholds.json), the ones tools/infer.py and the exported model apply."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ppq2l.calibration.scores_file import Scores
from ppq2l.calibration.thresholds_file import name_difference
from ppq2l.errors import ConfigError
from ppq2l.postprocess import build_postprocess
from ppq2l.predict import config_postprocess
from ppq2l.report.build import ReportInputs, write_report
from ppq2l.report.plots import require_matplotlib
from ppq2l.utils.atomic_write import prepare_output_dir

REPORT_KEY = "Eval.report"


def prepare_report_folder(folder: Any) -> Path:
    """Check, before any work, that the report can be written: matplotlib and the folder."""
    require_matplotlib(REPORT_KEY)
    return prepare_output_dir(folder, REPORT_KEY)


def thresholds_in_use(config: dict, data: Scores,
                      logger: logging.Logger) -> tuple[np.ndarray, str, dict | None]:
    """(thresholds [C], where they come from, the thresholds.json document or None)."""
    settings = config_postprocess(config, data.source.get("checkpoint"), logger)
    postprocess = build_postprocess(settings, "Infer.PostProcess")
    class_num = data.scores.shape[1]
    thresholds = postprocess.thresholds_for(class_num)
    names = postprocess.label_names
    if names is not None and data.class_names and list(names) != list(data.class_names):
        raise ConfigError(f"{data.path} was scored with other class names than "
                          f"Infer.PostProcess.class_id_map_file: "
                          f"{name_difference(data.class_names, names)}")
    found = postprocess.thresholds_file
    if found is not None:
        if data.class_names:
            found.check_classes(class_num, data.class_names, "the scored model")
        return thresholds, f"calibrated, {found.describe()}", found.document
    if np.all(thresholds == thresholds[0]):
        return thresholds, f"{thresholds[0]:g} for every class (Infer.PostProcess.threshold)", None
    return thresholds, "one per class from Infer.PostProcess.threshold", None


def report_from_config(config: dict, data: Scores, folder: Path, metrics: dict[str, Any],
                       logger: logging.Logger) -> Path:
    """Write the report of `data` into `folder` (checked by prepare_report_folder)."""
    thresholds, origin, document = thresholds_in_use(config, data, logger)
    return write_report(folder, ReportInputs(data, thresholds, origin, document, metrics), logger)
