"""Reading the text files a user writes (list files, CSV files, label maps) as UTF-8, with a bad
byte reported by file and line instead of a UnicodeDecodeError. Torch-free: the deploy predictor
reads label maps through it."""
from __future__ import annotations

import os
from pathlib import Path

from ppq2l.errors import DataError


def read_utf8_text(path: str | os.PathLike, what: str) -> str:
    """The text of `path` (a leading byte-order mark removed); `what` names the file's role
    (e.g. "list file") in the DataError for an unreadable file or bytes that are not UTF-8."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        # utf-8-sig drops a 3-byte BOM before decoding, so the offset counts from after it
        start = error.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, start) + 1
        raise DataError(f"{what} {path}, line {line}: byte 0x{data[start]:02x} is not UTF-8 text "
                        "(the file looks like Latin-1 or another legacy encoding); save it as "
                        "UTF-8") from None
