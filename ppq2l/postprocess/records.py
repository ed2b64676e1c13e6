"""Prediction records (one JSON object per image): printing them as the predicting tools do,
saving them as a JSON-lines file, and the tools' exit status from them."""
from __future__ import annotations

import json
import os
import sys
from typing import Callable, Sequence

from ppq2l.cli import run_cli
from ppq2l.predict import exit_status, failure_summary
from ppq2l.utils.atomic_write import write_text_atomic


def write_records(records: list[dict], save_path: str | os.PathLike) -> None:
    """Write the records as JSON lines (through a temporary file and a rename)."""
    write_text_atomic(save_path, "".join(json.dumps(record) + "\n" for record in records))


def print_records(records: Sequence[dict]) -> None:
    """Every record as a JSON line on stdout, then the line naming the inputs without a
    prediction on stderr when there are any."""
    for record in records:
        print(json.dumps(record))
    summary = failure_summary(records)
    if summary:
        print(summary, file=sys.stderr)


def run_records_cli(main: Callable[[Sequence[str] | None], list[dict]],
                    argv: Sequence[str] | None = None) -> int:
    """`run_cli` for a tool whose `main` returns records: exit status 1 when some input has an
    error record (0 when none has), or run_cli's status for a mistake."""
    outcome: dict = {}

    def run(arguments: Sequence[str] | None) -> None:
        outcome["records"] = main(arguments)

    status = run_cli(run, argv)
    return exit_status(outcome["records"]) if status == 0 else status
