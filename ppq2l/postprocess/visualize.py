"""Drawing predicted labels on images (Infer.visualize); OpenCV only."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ppq2l.data.transforms import decode_to_bgr
from ppq2l.errors import DataError


def draw_labels(image_bgr: np.ndarray, record: dict) -> np.ndarray:
    """A copy of the image with one `name score` line per predicted label in its top-left corner."""
    canvas = image_bgr.copy()
    names = record["label_names"] or [str(class_id) for class_id in record["class_ids"]]
    scale = max(0.4, min(canvas.shape[:2]) / 500)
    for line, (name, score) in enumerate(zip(names, record["scores"])):
        origin = (5, int((line + 1) * 22 * scale))
        text = f"{name} {score:.3f}"
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 255), 1,
                    cv2.LINE_AA)
    return canvas


def save_visualization(path: Path, record: dict, folder: Path, root: Path) -> Path:
    """Write the image with its labels drawn to `folder`, named after its path under `root`."""
    relative = path.relative_to(root) if root.is_dir() else Path(path.name)
    target = folder / ("__".join(relative.with_suffix("").parts) + ".jpg")
    if not cv2.imwrite(str(target), draw_labels(decode_to_bgr(path.read_bytes()), record)):
        raise DataError(f"cannot write {target}")
    return target


def save_visualizations(files: Sequence[Path], records: Sequence[dict], folder: Path,
                        root: Path) -> list[Path]:
    """Draw every predicted record (error records have nothing to draw) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return [save_visualization(path, record, folder, root)
            for path, record in zip(files, records) if "error" not in record]
