"""Per-label maps drawn over their image: a heatmap per label with its name and score in the
corner, a grid of them when several labels fire, and the raw maps as .npy. NumPy and OpenCV
only: the torch tools and the torch-free deploy predictor render with this same code."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ppq2l.data.transforms import CropImage, ResizeImage, decode_to_bgr
from ppq2l.utils.atomic_write import OutputError, atomic_output, describe_os_error

DISPLAY_MIN_SIDE = 256  # small images are enlarged so that the label text stays legible
HEAT_WEIGHT = 0.5  # share of the heatmap in the blend
GRID_COLUMNS = 3
DEFAULT_TOP_K = 3
GRID_FILE, MAPS_FILE = "grid.jpg", "maps.npy"
JPEG_QUALITY = 90


def input_region(ops: Sequence[Any], width: int, height: int) -> tuple[float, float, float, float]:
    """The part of a `width` x `height` image that the model sees after the preprocessing op
    objects `ops`, as fractions (left, top, right, bottom): the whole image unless a CropImage
    cuts it; only ResizeImage and CropImage change the geometry of the inference ops."""
    left, top, right, bottom = 0.0, 0.0, 1.0, 1.0
    size_w, size_h = float(width), float(height)
    for op in ops:
        if isinstance(op, ResizeImage):
            size_w, size_h = (float(side) for side in op.output_size(round(size_w), round(size_h)))
        elif isinstance(op, CropImage):
            crop_w, crop_h = min(op.width, size_w), min(op.height, size_h)
            x0, y0 = (size_w - crop_w) // 2, (size_h - crop_h) // 2  # CropImage's centre crop
            span_w, span_h = right - left, bottom - top
            left, right = left + span_w * x0 / size_w, left + span_w * (x0 + crop_w) / size_w
            top, bottom = top + span_h * y0 / size_h, top + span_h * (y0 + crop_h) / size_h
            size_w, size_h = crop_w, crop_h
    return left, top, right, bottom


def resize_map(label_map: np.ndarray, width: int, height: int) -> np.ndarray:
    """One map [h, w] resized to `height` x `width` by bilinear interpolation, kept >= 0."""
    resized = cv2.resize(np.asarray(label_map, dtype=np.float32), (int(width), int(height)),
                         interpolation=cv2.INTER_LINEAR)
    return np.maximum(resized, 0.0)


def map_on_image(label_map: np.ndarray, width: int, height: int,
                 region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)) -> np.ndarray:
    """A `height` x `width` map: `label_map` upsampled over the image region the model saw
    (`input_region`), zero outside it."""
    x0, y0 = round(region[0] * width), round(region[1] * height)
    x1, y1 = max(x0 + 1, round(region[2] * width)), max(y0 + 1, round(region[3] * height))
    full = np.zeros((int(height), int(width)), dtype=np.float32)
    full[y0:y1, x0:x1] = resize_map(label_map, x1 - x0, y1 - y0)
    return full


def heatmap_overlay(image_bgr: np.ndarray, label_map: np.ndarray, text: str,
                    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)) -> np.ndarray:
    """The image with the map (scaled to its own maximum) blended on as a JET heatmap and `text`
    in the top-left corner; images with a short side under DISPLAY_MIN_SIDE are enlarged."""
    height, width = image_bgr.shape[:2]
    scale = max(1.0, DISPLAY_MIN_SIDE / min(height, width))
    if scale > 1.0:
        width, height = round(width * scale), round(height * scale)
        image_bgr = cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_LINEAR)
    full = map_on_image(label_map, width, height, region)
    peak = float(full.max())
    levels = np.uint8(np.clip(full / peak if peak > 0 else full, 0.0, 1.0) * 255.0 + 0.5)
    heat = cv2.applyColorMap(levels, cv2.COLORMAP_JET)
    canvas = cv2.addWeighted(image_bgr, 1.0 - HEAT_WEIGHT, heat, HEAT_WEIGHT, 0.0)
    draw_corner_text(canvas, text)
    return canvas


def draw_corner_text(canvas: np.ndarray, text: str) -> None:
    """`text` on a dark box in the top-left corner of `canvas` (in place)."""
    font_scale = max(0.45, min(canvas.shape[:2]) / 480)
    thickness = max(1, round(font_scale * 1.6))
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                                                 thickness)
    if text_w > 0.95 * canvas.shape[1]:  # a long label name: smaller letters, still all of it
        font_scale *= 0.95 * canvas.shape[1] / text_w
        (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                                                     thickness)
    pad = max(3, text_h // 3)
    cv2.rectangle(canvas, (0, 0), (text_w + 2 * pad, text_h + baseline + 2 * pad), (0, 0, 0), -1)
    cv2.putText(canvas, text, (pad, pad + text_h), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                (255, 255, 255), thickness, cv2.LINE_AA)


def grid_image(tiles: Sequence[np.ndarray], columns: int = GRID_COLUMNS) -> np.ndarray:
    """Tiles of one size side by side, `columns` per row, the last row padded with black."""
    columns = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    blank = np.zeros_like(tiles[0])
    padded = list(tiles) + [blank] * (rows * columns - len(tiles))
    return np.vstack([np.hstack(padded[row * columns:(row + 1) * columns]) for row in range(rows)])


def labels_to_draw(record: dict, scores: np.ndarray, top_k: int) -> list[tuple[int, float, bool]]:
    """(class id, score, passed the threshold) for every predicted label of `record`, or for the
    `top_k` best-scored classes when none passed."""
    if record.get("class_ids"):
        return [(int(c), float(s), True) for c, s in zip(record["class_ids"], record["scores"])]
    best = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:top_k]
    return [(int(c), float(scores[c]), False) for c in best]


def safe_name(text: str) -> str:
    """`text` usable in a file name: runs of other characters than letters, digits, `.-_`
    become `_`."""
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "label"


def encode_jpeg(image: np.ndarray, path: Path) -> bytes:
    """JPEG bytes of `image`; an image OpenCV cannot encode is an OutputError naming `path`."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OutputError(f"cannot encode {path} as JPEG")
    return data.tobytes()


def write_file(path: Path, data: bytes | np.ndarray) -> None:
    """Write bytes, or an array as .npy, through a temporary file and a rename."""
    with atomic_output(path) as handle:
        if isinstance(data, np.ndarray):
            np.save(handle, data)
        else:
            handle.write(data)


class OverlayWriter:
    """The map hook of `ppq2l.predict.Predictor.explain_with`: for each predicted image, writes
    `folder/<image>/<class index>_<label>.jpg` per label (the `top_k` best when none passed the
    threshold), `grid.jpg` when there are several, and `maps.npy` (all classes, [C, h, w] at the
    feature resolution). `<image>` is the file's path under `root`, folders joined by `__`."""

    def __init__(self, folder: str | Path, ops: Sequence[Any], label_names: Sequence[str] | None,
                 root: str | Path | None = None, top_k: int = DEFAULT_TOP_K) -> None:
        self.folder, self.ops, self.top_k = Path(folder), list(ops), int(top_k)
        self.label_names = None if label_names is None else list(label_names)
        self.root = None if root is None else Path(root)
        self.images = 0  # images rendered so far

    def image_folder(self, source: Path | np.ndarray, name: str) -> Path:
        """Where the files of one image go."""
        if isinstance(source, np.ndarray):
            return self.folder / safe_name(name.strip("<>"))
        relative = (source.relative_to(self.root) if self.root is not None and self.root.is_dir()
                    and source.is_relative_to(self.root) else Path(source.name))
        return self.folder / "__".join(relative.with_suffix("").parts)

    def label_text(self, class_id: int) -> str:
        """The name shown for a class: its label name, else its index."""
        return self.label_names[class_id] if self.label_names else f"class {class_id}"

    def __call__(self, sources: Sequence[Path | np.ndarray], records: Sequence[dict],
                 scores: np.ndarray, maps: np.ndarray) -> None:
        for source, record, row, image_maps in zip(sources, records, scores, maps):
            self.render(source, record, row, image_maps)

    def render(self, source: Path | np.ndarray, record: dict, scores: np.ndarray,
               maps: np.ndarray) -> list[Path]:
        """Write the files of one image; returns their paths."""
        if isinstance(source, np.ndarray):
            image = np.ascontiguousarray(source[..., ::-1])  # numpy inputs are RGB
        else:
            image = decode_to_bgr(Path(source).read_bytes())
        region = input_region(self.ops, image.shape[1], image.shape[0])
        target = self.image_folder(source, record["file_name"])
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot create {target}: {describe_os_error(error)}") from None
        files, tiles = [], []
        for class_id, score, passed in labels_to_draw(record, scores, self.top_k):
            name = self.label_text(class_id)
            text = f"{name} {score:.2f}" + ("" if passed else " (below threshold)")
            tiles.append(heatmap_overlay(image, maps[class_id], text, region))
            files.append((target / f"{class_id}_{safe_name(name)}.jpg", tiles[-1]))
        if len(tiles) > 1:
            files.append((target / GRID_FILE, grid_image(tiles)))
        written = []
        for path, picture in files:
            write_file(path, encode_jpeg(picture, path))
            written.append(path)
        write_file(target / MAPS_FILE, np.asarray(maps, dtype=np.float32))
        written.append(target / MAPS_FILE)
        self.images += 1
        return written
