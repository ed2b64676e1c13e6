"""Synthetic COCO-format dataset of coloured geometric shapes, small enough to train on a CPU.

Each image holds 0-5 shapes from 12 categories (sparse COCO-like ids) on a random or gradient
background with clutter, colour jitter, noise and blur. Every image is drawn from its own random
generator seeded by (seed, split, index), so the output is byte-identical for a seed and images can
be produced in any order.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ppq2l.checks import integer, is_number, number_list
from ppq2l.errors import ConfigError, DataError
from ppq2l.utils.atomic_write import write_text_atomic

# Bump whenever the drawing changes, so that a stamped dataset on disk is regenerated.
FORMAT_VERSION = 3
STAMP_NAME = "generation.json"
SPLIT_DIRS = {"train": "train2017", "val": "val2017"}
SPLIT_SEED_CODES = {"train": 0, "val": 1}
# Image ids are unique across both splits, as in COCO.
VAL_IMAGE_ID_OFFSET = 1_000_000
# Every 50th image (index % 50 == 1, so tiny sets have one too) has no object: 2 % unannotated.
EMPTY_IMAGE_PERIOD = 50
MAX_OBJECTS = 5
OBJECT_SIZE_RANGE = (0.35, 0.60)  # longest side of the unrotated shape, as a fraction of min(W, H)
MAX_HIDDEN_FRACTION = 0.25
PLACEMENT_TRIES = 30
COLOUR_TRIES = 40
MIN_BACKGROUND_LUMA_CONTRAST = 55.0
MIN_OBJECT_COLOUR_DISTANCE = 110.0  # RGB distance to touching objects
NEIGHBOUR_KERNEL = np.ones((7, 7), np.uint8)  # objects within 3 px count as touching
JPEG_QUALITY = 90
SUBPIXEL_BITS = 4  # cv2 polygon coordinates carry 4 fractional bits


@dataclass(frozen=True)
class ShapeCategory:
    """One category: its COCO id and name, outline layers in unit coordinates, allowed rotation."""

    category_id: int
    name: str
    paint: tuple[np.ndarray, ...]  # polygons filled with the object colour
    cut: tuple[np.ndarray, ...]  # polygons cut back out afterwards (holes)
    max_rotation_degrees: float


def _ellipse(center_x: float, center_y: float, radius: float, start: float = 0.0,
             stop: float = 2 * np.pi, points: int = 64) -> np.ndarray:
    angles = np.linspace(start, stop, points, endpoint=(stop - start) < 2 * np.pi)
    return np.stack([center_x + radius * np.cos(angles), center_y + radius * np.sin(angles)], 1)


def _star(tips: int = 5, inner_radius: float = 0.42) -> np.ndarray:
    angles = -np.pi / 2 + np.arange(2 * tips) * np.pi / tips
    radii = np.where(np.arange(2 * tips) % 2 == 0, 1.0, inner_radius)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)


def _crescent(hole_offset: float = 0.45, hole_radius: float = 0.9) -> np.ndarray:
    """A unit disk minus a disk shifted right: outer arc through the left, inner arc back."""
    tip_x = (1.0 + hole_offset ** 2 - hole_radius ** 2) / (2 * hole_offset)
    tip_y = np.sqrt(1.0 - tip_x ** 2)
    outer_start = np.arctan2(tip_y, tip_x)
    inner_start = np.arctan2(tip_y, tip_x - hole_offset)
    outer = _ellipse(0.0, 0.0, 1.0, outer_start, 2 * np.pi - outer_start, 48)
    inner = _ellipse(hole_offset, 0.0, hole_radius, 2 * np.pi - inner_start, inner_start, 48)
    return np.concatenate([outer, inner])


def _heart(points: int = 72) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, points, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y], 1)


def _polygon(*points: tuple[float, float]) -> np.ndarray:
    return np.array(points, dtype=np.float64)


def _normalised(category_id: int, name: str, paint: list[np.ndarray], cut: list[np.ndarray],
                max_rotation_degrees: float) -> ShapeCategory:
    """Centre the painted outline on the origin and scale its longest side to 2 units."""
    vertices = np.concatenate(paint)
    low, high = vertices.min(0), vertices.max(0)
    center, scale = (low + high) / 2, 2.0 / float((high - low).max())
    return ShapeCategory(category_id, name, tuple((p - center) * scale for p in paint),
                         tuple((p - center) * scale for p in cut), max_rotation_degrees)


_SQUARE = _polygon((-1, -1), (1, -1), (1, 1), (-1, 1))
# Sparse ids, like COCO's. Rotation stays within +-20 degrees so no shape turns into another one.
CATEGORIES: tuple[ShapeCategory, ...] = (
    _normalised(1, "circle", [_ellipse(0, 0, 1)], [], 0),
    _normalised(2, "ring", [_ellipse(0, 0, 1)], [_ellipse(0, 0, 0.58)], 0),
    _normalised(3, "square", [_SQUARE], [], 20),
    _normalised(5, "square_frame", [_SQUARE], [_SQUARE * 0.55], 20),
    _normalised(7, "triangle", [_polygon((0, -1), (1, 0.75), (-1, 0.75))], [], 20),
    _normalised(11, "star", [_star()], [], 20),
    _normalised(13, "plus", [_polygon((-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3),
                                      (0.3, 0.3), (0.3, 1), (-0.3, 1), (-0.3, 0.3), (-1, 0.3),
                                      (-1, -0.3), (-0.3, -0.3))], [], 15),
    _normalised(17, "crescent", [_crescent()], [], 20),
    _normalised(19, "semicircle", [_ellipse(0, 0, 1, np.pi, 2 * np.pi, 40)], [], 20),
    _normalised(23, "arrow", [_polygon((-1, -0.22), (0.15, -0.22), (0.15, -0.65), (1, 0),
                                       (0.15, 0.65), (0.15, 0.22), (-1, 0.22))], [], 20),
    _normalised(29, "heart", [_heart()], [], 20),
    _normalised(31, "hourglass", [_polygon((-0.8, -1), (0.8, -1), (0.12, 0), (0.8, 1),
                                           (-0.8, 1), (-0.12, 0))], [], 20),
)


@dataclass
class _PlacedObject:
    category: ShapeCategory
    colour: np.ndarray
    full_area: int
    visible: np.ndarray  # bool mask of the pixels no later object covers


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _composite(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Blend `colour` into the float canvas in place with an 8-bit anti-aliased coverage mask."""
    weight = alpha.astype(np.float32)[..., None] / 255.0
    canvas *= 1.0 - weight
    canvas += weight * colour


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    first = rng.uniform(0, 255, 3).astype(np.float32)
    if rng.random() < 0.5:
        return np.broadcast_to(first, (height, width, 3)).copy()
    # A gradient of modest range, so one object colour can stand out against all of it.
    second = np.clip(first + rng.uniform(-70, 70, 3), 0, 255).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = xs * np.float32(np.cos(angle)) + ys * np.float32(np.sin(angle))
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.0)
    return first + ramp[..., None] * (second - first)


def _draw_clutter(rng: np.random.Generator, canvas: np.ndarray, lines: int, specks: int) -> None:
    height, width = canvas.shape[:2]
    for _ in range(lines):
        alpha = np.zeros((height, width), np.uint8)
        start = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(alpha, start, end, 255, 1, cv2.LINE_AA)
        _composite(canvas, alpha, rng.uniform(0, 255, 3).astype(np.float32))
    for _ in range(specks):
        alpha = np.zeros((height, width), np.uint8)
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(alpha, center, int(rng.integers(1, 3)), 255, -1, cv2.LINE_AA)
        _composite(canvas, alpha, rng.uniform(0, 255, 3).astype(np.float32))


def _shape_alpha(rng: np.random.Generator, category: ShapeCategory, height: int,
                 width: int) -> np.ndarray:
    """Coverage mask of the shape at a random size, rotation, aspect and position fully inside."""
    size = rng.uniform(*OBJECT_SIZE_RANGE) * min(height, width)
    angle = np.deg2rad(rng.uniform(-1, 1) * category.max_rotation_degrees)
    aspect = np.exp(rng.uniform(-0.15, 0.15))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    transform = rotation @ np.diag([aspect, 1 / aspect]) * (size / 2)
    vertices = np.concatenate(category.paint) @ transform.T
    # Keep a one-pixel margin so anti-aliased edges stay inside the image too.
    first = 1.0 - vertices.min(0)
    last = np.array([width - 2.0, height - 2.0]) - vertices.max(0)
    offset = np.array([rng.uniform(first[axis], max(last[axis], first[axis])) for axis in (0, 1)])
    alpha = np.zeros((height, width), np.uint8)
    for polygons, value in ((category.paint, 255), (category.cut, 0)):
        for polygon in polygons:
            points = np.round((polygon @ transform.T + offset) * (1 << SUBPIXEL_BITS))
            cv2.fillPoly(alpha, [points.astype(np.int32)], value, cv2.LINE_AA, SUBPIXEL_BITS)
    return alpha


def _place_without_hiding(rng: np.random.Generator, category: ShapeCategory,
                          placed: list[_PlacedObject], height: int,
                          width: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A placement (alpha, solid mask) that leaves every earlier object mostly visible, or None."""
    for _ in range(PLACEMENT_TRIES):
        alpha = _shape_alpha(rng, category, height, width)
        solid = alpha >= 128
        if all(np.count_nonzero(other.visible & ~solid)
               >= (1 - MAX_HIDDEN_FRACTION) * other.full_area for other in placed):
            return alpha, solid
    return None


def _pick_colour(rng: np.random.Generator, background_luma: float,
                 neighbours: list[_PlacedObject]) -> np.ndarray:
    """A colour that stands out from the background and from the objects it touches.

    After COLOUR_TRIES draws the most distinct one is used, so a crowded image still gets drawn.
    """
    best, best_score = None, -1.0
    for _ in range(COLOUR_TRIES):
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        score = abs(float(_luma(colour)) - background_luma) / MIN_BACKGROUND_LUMA_CONTRAST
        for other in neighbours:
            distance = float(np.linalg.norm(colour - other.colour))
            score = min(score, distance / MIN_OBJECT_COLOUR_DISTANCE)
        if score >= 1.0:
            return colour
        if score > best_score:
            best, best_score = colour, score
    return best


def _annotation(obj: _PlacedObject) -> dict[str, Any]:
    """COCO fields of the object's visible region: bbox [x, y, w, h], pixel area, outer polygons."""
    ys, xs = np.nonzero(obj.visible)
    x0, y0 = int(xs.min()), int(ys.min())
    contours, _ = cv2.findContours(obj.visible.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    # COCO polygons cannot hold holes, so rings and frames are traced by their outer edge only.
    segmentation = [[float(value) for value in contour.reshape(-1)]
                    for contour in contours if len(contour) >= 3]
    return {"category_id": obj.category.category_id,
            "bbox": [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)],
            "area": float(xs.size), "segmentation": segmentation}


def render_demo_image(seed: int, split: str, index: int,
                      image_size_range: tuple[int, int] = (112, 160)
                      ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw image `index` of `split`: an RGB uint8 array and its objects' COCO annotation fields."""
    rng = np.random.default_rng([seed, SPLIT_SEED_CODES[split], index])
    low, high = image_size_range
    height, width = (int(side) for side in rng.integers(low, high + 1, 2))
    canvas = _background(rng, height, width)
    background_luma = _luma(canvas)
    _draw_clutter(rng, canvas, lines=int(rng.integers(0, 4)), specks=0)

    count = 0 if index % EMPTY_IMAGE_PERIOD == 1 else int(rng.integers(1, MAX_OBJECTS + 1))
    placed: list[_PlacedObject] = []
    for category_index in rng.integers(0, len(CATEGORIES), count):
        category = CATEGORIES[int(category_index)]
        placement = _place_without_hiding(rng, category, placed, height, width)
        if placement is None:
            continue  # too crowded for one more object; the image keeps the ones already drawn
        alpha, solid = placement
        near = cv2.dilate(solid.astype(np.uint8), NEIGHBOUR_KERNEL).astype(bool)
        neighbours = [other for other in placed if np.any(other.visible & near)]
        colour = _pick_colour(rng, float(background_luma[solid].mean()), neighbours)
        _composite(canvas, alpha, colour)
        for other in placed:
            other.visible &= ~solid
        placed.append(_PlacedObject(category, colour, int(np.count_nonzero(solid)), solid))
    _draw_clutter(rng, canvas, lines=0, specks=int(rng.integers(0, 9)))

    contrast, brightness = rng.uniform(0.8, 1.2), rng.uniform(-25, 25)
    canvas = (canvas - 128.0) * np.float32(contrast) + np.float32(128.0 + brightness)
    canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(rng.uniform(0, 6))
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        # Blur in 8 bits: OpenCV's 8-bit Gaussian is bit-exact, so files stay reproducible.
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.0))
    return image, [_annotation(obj) for obj in placed]


def generation_parameters(num_train: int = 2000, num_val: int = 500, seed: int = 0,
                          image_size_range: tuple[int, int] = (112, 160)) -> dict[str, Any]:
    """The checked parameters as stored in the `generation.json` stamp."""
    for name, value in (("num_train", num_train), ("num_val", num_val)):
        integer(value, name, minimum=0, maximum=VAL_IMAGE_ID_OFFSET - 1,
                why="image ids of the two splits must not overlap")
    integer(seed, "seed", minimum=0)
    low, high = number_list(image_size_range, "image_size_range", length=2, integers=True,
                            minimum=32, example="[112, 160] (low, high)")
    if low > high:
        raise ConfigError(f"image_size_range must be (low, high) with 32 <= low <= high, "
                          f"got {tuple(image_size_range)!r}")
    return {"format_version": FORMAT_VERSION, "num_train": num_train, "num_val": num_val,
            "seed": seed, "image_size_range": [low, high]}


def read_generation_stamp(root: str | os.PathLike) -> dict[str, Any] | None:
    """The stamp a finished or interrupted generation left in `root`, or None if there is none."""
    path = Path(root) / STAMP_NAME
    if not path.is_file():
        return None
    try:
        stamp = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}  # ours by name but unreadable: treated as out of date
    return stamp if isinstance(stamp, dict) else {}


def _first_image_id(split: str) -> int:
    return 1 if split == "train" else VAL_IMAGE_ID_OFFSET + 1


def image_file_names(split: str, count: int) -> list[str]:
    """The names of the `count` image files the generator writes into `split`'s folder."""
    return [f"{_first_image_id(split) + index:012d}.jpg" for index in range(count)]


def _names_in_stamp(stamp: dict[str, Any], split: str) -> set[str]:
    """The image names the generation recorded in `stamp` wrote (or began to write) for `split`;
    none when the stamp is unreadable, so nothing is taken for the generator's own."""
    count = stamp.get(f"num_{split}")
    if not (is_number(count) and isinstance(count, int) and 0 <= count < VAL_IMAGE_ID_OFFSET):
        return set()
    return set(image_file_names(split, count))


def is_up_to_date(root: str | os.PathLike, **parameters: Any) -> bool:
    """Whether `root` holds a complete dataset generated with these parameters (other files the
    user put beside the images do not matter)."""
    root = Path(root)
    expected = {**generation_parameters(**parameters), "complete": True}
    if read_generation_stamp(root) != expected:
        return False
    counts = {"train": expected["num_train"], "val": expected["num_val"]}
    for split, directory in SPLIT_DIRS.items():
        if not (root / "annotations" / f"instances_{directory}.json").is_file():
            return False
        if not all((root / directory / name).is_file()
                   for name in image_file_names(split, counts[split])):
            return False
    return True


def _prepare_root(root: Path, parameters: dict[str, Any]) -> None:
    """Create `root`, or remove the images an earlier generation (named by its stamp) wrote there;
    refuse a folder of other data, and files of others where the new images would go."""
    if root.exists() and not root.is_dir():
        raise DataError(f"dataset root {root} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    stamp = read_generation_stamp(root)
    if stamp is None:
        if any(root.iterdir()):
            raise DataError(f"dataset root {root} is not empty and has no {STAMP_NAME}, so it is "
                            "not a demo dataset this generator wrote; choose a new or empty folder")
        return
    ours, foreign = {}, []
    for split, directory in SPLIT_DIRS.items():
        ours[directory] = _names_in_stamp(stamp, split)
        foreign += [root / directory / name
                    for name in image_file_names(split, parameters[f"num_{split}"])
                    if name not in ours[directory] and (root / directory / name).exists()]
    if foreign:
        shown = ", ".join(str(path) for path in foreign[:3])
        raise DataError(f"{len(foreign)} file(s) that {root / STAMP_NAME} does not list as written "
                        f"by this generator lie where it would write its images ({shown}"
                        f"{' ...' if len(foreign) > 3 else ''}); move them away or choose another "
                        "--root")
    # Only the earlier run's own images go (a larger run's would linger next to the new ones);
    # anything else in the folders is the user's and stays.
    for directory, names in ours.items():
        for name in names:
            (root / directory / name).unlink(missing_ok=True)


def _write_json(path: Path, content: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(content, separators=(",", ":")))


def _write_split(root: Path, split: str, count: int, seed: int,
                 image_size_range: tuple[int, int]) -> dict[str, Any]:
    directory = SPLIT_DIRS[split]
    (root / directory).mkdir(exist_ok=True)
    first_id = _first_image_id(split)
    images, annotations = [], []
    for index, file_name in enumerate(image_file_names(split, count)):
        image_id = first_id + index
        pixels, objects = render_demo_image(seed, split, index, image_size_range)
        encoded, data = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR),
                                     [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not encoded:
            raise DataError(f"could not encode {file_name} as JPEG")
        # a plain write: the stamp says "complete": false until every image is written
        (root / directory / file_name).write_bytes(data.tobytes())
        images.append({"id": image_id, "file_name": file_name, "width": int(pixels.shape[1]),
                       "height": int(pixels.shape[0]), "license": 1})
        for fields in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **fields,
                                "iscrowd": 0})
    _write_json(root / "annotations" / f"instances_{directory}.json", {
        "info": {"description": "ppq2l synthetic shapes demo dataset",
                 "version": str(FORMAT_VERSION), "year": 2024, "contributor": "ppq2l",
                 "date_created": "2024-01-01"},
        "licenses": [{"id": 1, "name": "CC0 1.0",
                      "url": "https://creativecommons.org/publicdomain/zero/1.0/"}],
        "images": images, "annotations": annotations,
        "categories": [{"id": c.category_id, "name": c.name, "supercategory": "shape"}
                       for c in CATEGORIES]})
    per_category = {c.name: 0 for c in CATEGORIES}
    names = {c.category_id: c.name for c in CATEGORIES}
    for annotation in annotations:
        per_category[names[annotation["category_id"]]] += 1
    annotated = {annotation["image_id"] for annotation in annotations}
    return {"images": count, "objects": len(annotations), "empty_images": count - len(annotated),
            "objects_per_category": per_category}


def generate_demo_dataset(root: str | os.PathLike, num_train: int = 2000, num_val: int = 500,
                          seed: int = 0, image_size_range: tuple[int, int] = (112, 160)
                          ) -> dict[str, Any]:
    """Write the COCO-format demo dataset under `root`; return per-split image and object counts."""
    root = Path(root)
    parameters = generation_parameters(num_train, num_val, seed, image_size_range)
    _prepare_root(root, parameters)
    # Stamped before writing, so an interrupted run is still recognised as this generator's output.
    _write_json(root / STAMP_NAME, {**parameters, "complete": False})
    (root / "annotations").mkdir(exist_ok=True)
    size_range = tuple(parameters["image_size_range"])
    splits = {SPLIT_DIRS[split]: _write_split(root, split, count, seed, size_range)
              for split, count in (("train", num_train), ("val", num_val))}
    _write_json(root / STAMP_NAME, {**parameters, "complete": True})
    return {"root": str(root), "parameters": parameters, "splits": splits,
            "categories": [{"id": c.category_id, "name": c.name} for c in CATEGORIES]}
