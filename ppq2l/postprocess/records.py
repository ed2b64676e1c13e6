"""Saving prediction records (one JSON object per image) as a JSON-lines file."""
from __future__ import annotations

import json
import os
from pathlib import Path


def write_records(records: list[dict], save_path: str | os.PathLike) -> None:
    """Write the records as JSON lines (through a temporary file and a rename)."""
    save_path = Path(save_path)
    save_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = save_path.with_name(save_path.name + ".tmp")
    temporary.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    os.replace(temporary, save_path)
