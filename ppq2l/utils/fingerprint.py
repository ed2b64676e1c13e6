"""A cheap identity of a weight file, so files derived from a checkpoint (scores, thresholds) can
tell whether they still belong to it."""
from __future__ import annotations

import hashlib
import os

HEAD_BYTES = 64 * 1024
TAIL_BYTES = 1024 * 1024


def file_fingerprint(path: str | os.PathLike) -> str:
    """`<size>:<sha256 prefix>` of the file's size, first 64 KiB and last 1 MiB.

    Reading a multi-GB checkpoint whole at every start would cost seconds; torch checkpoints are
    zip archives whose central directory, at the end, holds the CRC-32 of every stored tensor, so
    the tail changes whenever any weight does."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        digest.update(handle.read(HEAD_BYTES))
        if size > HEAD_BYTES:
            handle.seek(max(HEAD_BYTES, size - TAIL_BYTES))
            digest.update(handle.read())
    return f"{size}:{digest.hexdigest()[:32]}"
