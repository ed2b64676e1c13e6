"""Convert COCO instance annotations into a multi-label list file (`path<TAB>0,1,0,...` per image).

Usage (from the repository root):
    python ppq2l/utils/create_coco_multilabel_lists.py --dataset_dir dataset/COCO2017 \
        --image_dir val2017 --anno_path annotations/instances_val2017.json \
        --save_name multilabel_val_list [--output_dir DIR] [--save_label_name]
        [--label_file_name labels.txt] [--skip_empty] [--crowd unknown] [--unknown_key KEY]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import posixpath
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

from tqdm import tqdm

from ppq2l.cli import run_cli
from ppq2l.data.list_writer import DEFAULT_LABEL_FILE, add_output_arguments, check_label_file_name
from ppq2l.errors import DataError
from ppq2l.utils.atomic_write import prepare_output_dir, write_text_atomic
from ppq2l.utils.logger import get_logger

if TYPE_CHECKING:
    from pycocotools.coco import COCO

SHOWN_EXAMPLES = 3  # skipped images named in a warning or an error
REQUIRED_KEYS = {
    "images": ("id", "file_name"),
    "annotations": ("id", "image_id", "category_id"),
    "categories": ("id", "name"),
}


def load_coco_annotations(anno_path: str | os.PathLike) -> COCO:
    """Read and check a COCO instances json; DataError names the file and what is wrong with it."""
    anno_path = Path(anno_path)
    if not anno_path.is_file():
        raise DataError(f"annotation file not found: {anno_path} "
                        "(--anno_path is relative to --dataset_dir)")
    try:
        with open(anno_path, encoding="utf-8") as handle:
            dataset = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"annotation file {anno_path} is not valid JSON: {error}") from None
    if not isinstance(dataset, dict):
        raise DataError(f"annotation file {anno_path} must hold a JSON object with "
                        f"'images', 'annotations' and 'categories', got a {type(dataset).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in dataset]
    if missing:
        raise DataError(f"annotation file {anno_path} is not a COCO instances file: missing "
                        f"{', '.join(repr(key) for key in missing)} (it needs 'images', "
                        "'annotations' and 'categories')")
    for section, keys in REQUIRED_KEYS.items():
        entries = dataset[section]
        if not isinstance(entries, list):
            raise DataError(f"annotation file {anno_path}: '{section}' must be a list, "
                            f"got a {type(entries).__name__}")
        for position, entry in enumerate(entries):
            absent = [key for key in keys if not isinstance(entry, dict) or key not in entry]
            if absent:
                raise DataError(f"annotation file {anno_path}: {section}[{position}] lacks "
                                f"{', '.join(repr(key) for key in absent)}")
    _reject_duplicate_ids(dataset, "images", anno_path)
    _reject_duplicate_ids(dataset, "categories", anno_path)
    category_ids = {category["id"] for category in dataset["categories"]}
    for position, annotation in enumerate(dataset["annotations"]):
        if annotation["category_id"] not in category_ids:
            raise DataError(f"annotation file {anno_path}: annotations[{position}] has "
                            f"category_id {annotation['category_id']!r}, which is not in "
                            "'categories'")
    # Imported here so that training from list or CSV files does not need pycocotools.
    try:
        from pycocotools.coco import COCO
    except ImportError as error:
        raise DataError(f"reading the COCO annotation file {anno_path} needs pycocotools ({error}); "
                        "pip install pycocotools, or train from list or CSV files") from None

    coco = COCO()
    coco.dataset = dataset
    # pycocotools prints progress chatter to stdout; the converter reports through its logger.
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _reject_duplicate_ids(dataset: dict, section: str, anno_path: Path) -> None:
    seen: set = set()
    for entry in dataset[section]:
        if entry["id"] in seen:
            raise DataError(f"annotation file {anno_path}: id {entry['id']!r} appears twice in "
                            f"'{section}', so its labels would be ambiguous")
        seen.add(entry["id"])


def _has_negative_size(image: dict) -> bool:
    for key in ("width", "height"):
        value = image.get(key)
        if value is None:
            continue  # a size the json leaves out cannot be wrong; COCO itself always has it
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataError(f"image id {image['id']}: {key} must be a number, got {value!r}")
        if value < 0:
            return True
    return False


def _list_path_prefix(image_dir: str) -> str:
    """`image_dir` as written in list rows: relative to dataset_dir, forward slashes."""
    prefix = posixpath.normpath(Path(image_dir).as_posix())
    return "" if prefix == "." else prefix


class CocoSamples(NamedTuple):
    """What `multilabel_samples` found: the samples and the images it left out, by reason."""

    samples: list[tuple[str, list[int]]]  # (file_name, multi-hot label) per kept image
    missing: list[str]  # "image id N (path)" per image whose file does not exist
    negative_size: list[str]  # the same for images with a negative width or height
    empty: int  # images without annotations (kept as all-zero rows unless skip_empty)

    def skip_reasons(self) -> str:
        """The skipped images in words: count and first examples per reason."""
        return "; ".join(f"{len(items)} {reason} (e.g. {', '.join(items[:SHOWN_EXAMPLES])})"
                         for reason, items in (("file(s) not found", self.missing),
                                               ("with a negative size", self.negative_size))
                         if items) or "none skipped"


CROWD_MODES = ("positive", "unknown")


def image_label(coco: COCO, image: dict, annotations: list[dict], class_index: dict[int, int],
                crowd: str = "positive", unknown_key: str | None = None) -> list[int]:
    """The labels of one image: 1 for a class with an annotation, else 0; -1 (unknown) for a class
    whose only annotations are crowd regions (`crowd: unknown`) or whose id the image lists under
    `unknown_key` (a key a user adds to the images of the json, e.g. "unknown_category_ids")."""
    label = [0] * len(class_index)
    for annotation in annotations:
        position = class_index[annotation["category_id"]]
        if crowd == "unknown" and annotation.get("iscrowd"):
            label[position] = label[position] or -1  # a plain annotation of the class wins
        else:
            label[position] = 1
    for category_id in (image.get(unknown_key) or []) if unknown_key else []:
        if category_id not in class_index:
            raise DataError(f"image id {image['id']}: {unknown_key} names category id "
                            f"{category_id!r}, which is not in 'categories'")
        label[class_index[category_id]] = -1
    return label


def multilabel_samples(coco: COCO, image_root: str | os.PathLike, skip_empty: bool = False,
                       crowd: str = "positive", unknown_key: str | None = None) -> CocoSamples:
    """`(file_name, label)` per image in image-id order, classes in `coco.getCatIds()` order, and
    the images left out (missing file, negative size; one warning per reason); labels as
    `image_label` gives them. The list converter and `CocoDataset` both read COCO through this
    function."""
    category_ids = coco.getCatIds()
    class_index = {category_id: index for index, category_id in enumerate(category_ids)}
    found = CocoSamples([], [], [], 0)
    empty = 0
    for image_id in tqdm(sorted(coco.getImgIds()), desc="images", unit="img"):
        image = coco.imgs[image_id]
        file_name = image["file_name"]
        if any(character in file_name for character in "\t\r\n"):
            raise DataError(f"image id {image_id}: file_name {file_name!r} contains a tab or "
                            "line break, which the list format cannot hold")
        image_path = os.path.join(image_root, file_name)
        if not os.path.exists(image_path):
            found.missing.append(f"image id {image_id} ({image_path})")
            continue
        if _has_negative_size(image):
            found.negative_size.append(f"image id {image_id} ({file_name}: width "
                                       f"{image.get('width')}, height {image.get('height')})")
            continue
        # imgToAnns, not getAnnIds+loadAnns: the latter mixes up annotations that share an id.
        annotations = coco.imgToAnns.get(image_id, [])
        if not annotations:
            empty += 1
            if skip_empty:
                continue
        found.samples.append((file_name, image_label(coco, image, annotations, class_index, crowd,
                                                     unknown_key)))
    logger = get_logger()
    for items, reason in ((found.missing, "whose file is not found"),
                          (found.negative_size, "with a negative size in the annotation file")):
        if items:
            logger.warning(f"Skipping {len(items)} image(s) {reason}: "
                           f"{', '.join(items[:SHOWN_EXAMPLES])}"
                           f"{' ...' if len(items) > SHOWN_EXAMPLES else ''}")
    return found._replace(empty=empty)


def _label_lines(coco: COCO) -> list[str]:
    lines = []
    for index, category_id in enumerate(coco.getCatIds()):
        name = str(coco.cats[category_id]["name"])
        if not name.strip() or any(character in name for character in "\r\n"):
            raise DataError(f"category id {category_id}: name {name!r} is empty or has a "
                            "line break, which the label file cannot hold")
        lines.append(f"{index} {name}")
    return lines


def create_multilabel_list(dataset_dir: str | os.PathLike, image_dir: str,
                           anno_path: str | os.PathLike, save_name: str | None = None,
                           output_dir: str | os.PathLike | None = None,
                           save_label_name: bool = False, skip_empty: bool = False,
                           label_file_name: str | None = None, crowd: str = "positive",
                           unknown_key: str | None = None) -> dict[str, Any]:
    """Write `<output_dir>/<save_name>.txt` and, with `save_label_name` or `label_file_name`, the
    class names (`<output_dir>/labels.txt` by default); return the summary. `image_dir` and
    `anno_path` are relative to `dataset_dir`; `output_dir` defaults to it. Nothing is written
    when no image can be listed."""
    logger = get_logger()
    dataset_dir = str(dataset_dir)
    if not os.path.isdir(dataset_dir):
        raise DataError(f"dataset_dir not found: {dataset_dir}")
    image_root = os.path.join(dataset_dir, image_dir)
    full_anno_path = os.path.join(dataset_dir, anno_path)
    if not os.path.isdir(image_root):
        raise DataError(f"image_dir not found: {image_root} (--image_dir is relative to "
                        "--dataset_dir)")
    if save_name is None:
        save_name = os.path.splitext(os.path.basename(str(anno_path)))[0]
    if label_file_name is not None or save_label_name:
        label_file_name = DEFAULT_LABEL_FILE if label_file_name is None else label_file_name
        check_label_file_name(label_file_name, save_name + ".txt")
    coco = load_coco_annotations(full_anno_path)
    # checked before the scan, which takes minutes on a full COCO split
    output_dir = prepare_output_dir(dataset_dir if output_dir is None else output_dir,
                                    "--output_dir")

    category_ids = coco.getCatIds()
    prefix = _list_path_prefix(image_dir)
    logger.info(f"Converting {full_anno_path} ({len(category_ids)} classes)")
    found = multilabel_samples(coco, image_root, skip_empty, crowd, unknown_key)
    if not found.samples:
        left_out = f"; {found.empty} without annotations left out (--skip_empty)" \
            if skip_empty and found.empty else ""
        raise DataError(f"no image of {full_anno_path} can be listed from {image_root}: "
                        f"{len(coco.getImgIds())} images in the annotation file, "
                        f"{found.skip_reasons()}{left_out}; nothing was written")
    rows = []
    for file_name, label in found.samples:
        row_path = posixpath.join(prefix, file_name) if prefix else file_name
        rows.append(f"{row_path}\t{','.join(map(str, label))}")
    label_lines = _label_lines(coco) if label_file_name is not None else None

    list_path = os.path.join(output_dir, save_name + ".txt")
    _write_lines(list_path, rows)
    label_path = None
    if label_lines is not None:
        label_path = os.path.join(output_dir, label_file_name)
        _write_lines(label_path, label_lines)

    skipped = len(found.missing) + len(found.negative_size)
    unknown = sum(value < 0 for _, label in found.samples for value in label)
    summary = {"list_path": list_path, "label_path": label_path, "num_written": len(rows),
               "num_skipped": skipped, "num_empty": found.empty,
               "num_classes": len(category_ids), "num_unknown_labels": unknown}
    empty_fate = "left out (--skip_empty)" if skip_empty else "kept as all-zero rows"
    logger.info(f"Wrote {len(rows)} images to {list_path}; skipped {skipped}; {found.empty} "
                f"without annotations {empty_fate}; {len(category_ids)} classes; {unknown} "
                f"unknown labels (-1)")
    if label_path is not None:
        logger.info(f"Wrote {len(category_ids)} class names to {label_path}")
    return summary


def _write_lines(path: str, lines: list[str]) -> None:
    # A final newline, so that `cat a.txt b.txt` gives one row per line.
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The converter's options (PaddleClas's, plus --skip_empty)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset_dir", required=True, help="root directory of the dataset")
    parser.add_argument("--image_dir", required=True,
                        help="image folder, relative to --dataset_dir")
    parser.add_argument("--anno_path", required=True,
                        help="COCO annotation json, relative to --dataset_dir")
    add_output_arguments(parser, save_name_default="the annotation file's stem")
    parser.add_argument("--skip_empty", action="store_true",
                        help="leave out images without annotations instead of all-zero rows")
    parser.add_argument("--crowd", choices=CROWD_MODES, default="positive",
                        help="a class annotated only by crowd regions (iscrowd) in an image: "
                             "positive, or unknown (-1)")
    parser.add_argument("--unknown_key", default=None,
                        help="an image field of the json listing category ids whose labels are "
                             "unknown (-1) for that image")
    return parser.parse_args(argv)


def _convert(argv: Sequence[str] | None) -> None:
    args = parse_args(argv)
    create_multilabel_list(args.dataset_dir, args.image_dir, args.anno_path,
                           save_name=args.save_name, output_dir=args.output_dir,
                           save_label_name=args.save_label_name, skip_empty=args.skip_empty,
                           label_file_name=args.label_file_name, crowd=args.crowd,
                           unknown_key=args.unknown_key)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: 0 on success, 2 with one `error:` line for a bad input."""
    return run_cli(_convert, argv)


if __name__ == "__main__":
    sys.exit(main())
