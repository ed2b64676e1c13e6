"""Check the datasets of a config before training:
python tools/check_dataset.py -c CONFIG.yaml [-o Key.sub=value ...]
prints per-class label counts and every unreadable image, bad label row and empty class;
exit status 2 when there is any problem."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from ppq2l.cli import run_cli  # noqa: E402
from ppq2l.config import get_config, parse_args  # noqa: E402


def main(argv=None) -> list:
    """Print the report; a DataError (exit 2) counts the problems."""
    from ppq2l.data.dataset_check import check_datasets, format_report
    from ppq2l.errors import DataError

    args = parse_args(argv, description=__doc__)
    reports = check_datasets(get_config(args.config, args.override))
    print(format_report(reports))
    problems = sum(len(report["problems"]) for report in reports)
    if problems:
        raise DataError(f"{problems} problem(s) found in the datasets (listed above)")
    return reports


if __name__ == "__main__":
    sys.exit(run_cli(main))
