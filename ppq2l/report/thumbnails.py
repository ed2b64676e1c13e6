"""Small JPEG copies of the images behind a class's errors, for the report."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ppq2l.utils.atomic_write import atomic_output

THUMBNAIL_SIZE = 112  # longest side in pixels
JPEG_QUALITY = 85


def write_thumbnail(source: str | os.PathLike, target: str | os.PathLike,
                    size: int = THUMBNAIL_SIZE) -> bool:
    """Write a copy of image `source` at most `size` pixels on a side to `target`; False when
    the image cannot be read (moved, deleted or not an image), so the report can say so."""
    try:
        data = np.fromfile(str(source), dtype=np.uint8)  # also reads non-ASCII paths on Windows
    except OSError:
        return False
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        return False
    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        return False
    with atomic_output(Path(target)) as handle:
        handle.write(encoded.tobytes())
    return True
