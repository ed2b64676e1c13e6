"""Check the datasets of a config before training: ppq2l-check-dataset (or python
tools/check_dataset.py) -c CONFIG.yaml [-o Key.sub=value ...] prints per-class label counts and
every unreadable image, bad label row and empty class; exit status 2 when there is any problem."""
from __future__ import annotations

import sys
from typing import Sequence

from ppq2l.cli import run_cli
from ppq2l.config import get_config, parse_args
from ppq2l.errors import DataError


def main(argv: Sequence[str] | None = None) -> list:
    """Print the report; a DataError (exit 2) counts the problems."""
    args = parse_args(argv, description=__doc__)
    config = get_config(args.config, args.override)
    from ppq2l.data.dataset_check import check_datasets, format_report

    reports = check_datasets(config)
    print(format_report(reports))
    problems = sum(len(report["problems"]) for report in reports)
    if problems:
        raise DataError(f"{problems} problem(s) found in the datasets (listed above)")
    return reports


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 no problem, 2 problems found (listed) or a mistake in the input."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
