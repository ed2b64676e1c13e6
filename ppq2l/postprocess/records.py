"""Saving prediction records (one JSON object per image) as a JSON-lines file."""
from __future__ import annotations

import json
import os

from ppq2l.utils.atomic_write import write_text_atomic


def write_records(records: list[dict], save_path: str | os.PathLike) -> None:
    """Write the records as JSON lines (through a temporary file and a rename)."""
    write_text_atomic(save_path, "".join(json.dumps(record) + "\n" for record in records))
