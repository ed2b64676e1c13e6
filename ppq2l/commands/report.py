"""Write the evaluation report of saved scores without running the model: ppq2l-report (or
python tools/report.py) -c CONFIG.yaml [-o Eval.scores=OUT/scores.npz] [-o Eval.report=DIR]
reads the scores tools/eval.py saved and writes DIR/report.html (default OUT/report), its figures
and per_class.csv, at the thresholds Infer.PostProcess.threshold gives the scored checkpoint."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from ppq2l.cli import run_cli
from ppq2l.config import get_config, parse_args


def main(argv: Sequence[str] | None = None) -> Path:
    """Write the report; returns the path of report.html."""
    args = parse_args(argv, description=__doc__)
    config = get_config(args.config, args.override)
    from ppq2l.calibration.run import eval_scores_path, section_settings
    from ppq2l.calibration.scores_file import load_scores
    from ppq2l.engine.evaluator import compute_metrics
    from ppq2l.metric import build_metrics
    from ppq2l.report.from_config import prepare_report_folder, report_from_config
    from ppq2l.utils.logger import get_logger

    logger = get_logger()
    chosen = section_settings(config, "Eval")["report"]
    folder = prepare_report_folder(chosen or Path(config["Global"]["output_dir"]) / "report")
    metrics = build_metrics((config.get("Metric") or {}).get("Eval"), where="Metric.Eval")
    data = load_scores(eval_scores_path(config), "Eval.scores")
    logger.info("scores of %d images from %s", data.num_images, data.path)
    results = compute_metrics(metrics, data.scores, data.targets)  # what tools/eval.py printed
    path = report_from_config(config, data, folder, results, logger)
    print(f"saved {path}")
    return path


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 written, 2 a mistake in the input."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
