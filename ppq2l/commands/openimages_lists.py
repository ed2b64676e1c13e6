"""OpenImages image-level labels -> a CSV for CsvDataset: ppq2l-openimages-lists (or python
tools/create_openimages_lists.py) --dataset_dir dataset/openimages --image_dir train
    --labels_csv oidv7-train-annotations-human-imagelabels.csv
    --class_descriptions oidv7-class-descriptions.csv [--classes oidv7-classes-trainable.txt]
    --save_name oi_train [--class_file_name class_mids.txt] [--output_dir DIR]
    [--save_label_name] [--label_file_name labels.txt]
Each row is `<image_dir>/<ImageID>.jpg,?*;<MID>;-<MID>...`: the positives, the verified
negatives (-) and every other class unknown (?*), a few labels per row where a dense 0/1 list
would hold one value per class (9605 for the trainable set). --class_file_name gets the
`<index> <MID>` lines CsvDataset reads as class_id_map_file, --save_label_name the display names
for Infer.PostProcess. Files named relative to --dataset_dir; the CSV's paths too, so it is the
image_root."""
from __future__ import annotations

import argparse
import csv
import io
import os
import posixpath
import sys
from typing import Any, Iterator, Sequence

from ppq2l.cli import run_cli
from ppq2l.data.csv_dataset import ALL_OTHERS_UNKNOWN
from ppq2l.data.label_table import require_samples
from ppq2l.data.list_writer import (
    add_output_arguments,
    check_label_file_name,
    label_file_name,
    name_lines,
    write_lines,
)
from ppq2l.data.openimages import read_openimages
from ppq2l.errors import ConfigError
from ppq2l.utils.atomic_write import prepare_output_dir
from ppq2l.utils.logger import get_logger


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The converter's options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True, help="the OpenImages folder")
    parser.add_argument("--image_dir", required=True, help="folder of <ImageID>.jpg, relative to --dataset_dir")
    parser.add_argument("--labels_csv", required=True, help="image-level labels file, relative to --dataset_dir")
    parser.add_argument("--class_descriptions", required=True, help="class descriptions, relative to --dataset_dir")
    parser.add_argument("--classes", default=None, help="class subset (one MID per line), relative to --dataset_dir")
    parser.add_argument("--class_file_name", default="class_mids.txt",
                        help="the '<index> <MID>' file the CSV's names refer to")
    add_output_arguments(parser)
    return parser.parse_args(argv)


def csv_rows(paths: list[str], labels: Any, mids: list[str]) -> Iterator[str]:
    """`path,?*;MID;-MID` rows (quoted where a path needs it)."""
    yield "path,labels"
    for row, path in enumerate(paths):
        start, stop = labels.indptr[row], labels.indptr[row + 1]
        cells = [ALL_OTHERS_UNKNOWN] + [("" if value == 1 else "-") + mids[index] for index, value in
                                        zip(labels.indices[start:stop], labels.values[start:stop])]
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow([path, ";".join(cells)])
        yield buffer.getvalue()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the CSV and the class files; returns the summary."""
    args = parse_args(argv)
    names_file = label_file_name(args, args.save_name + ".csv")
    check_label_file_name(args.class_file_name, args.save_name + ".csv")
    if args.class_file_name == names_file:
        raise ConfigError(f"--class_file_name and --label_file_name are both {names_file}; the MIDs "
                          "and the display names need a file each")
    inside = [None if name is None else os.path.join(args.dataset_dir, name)
              for name in (args.labels_csv, args.class_descriptions, args.image_dir, args.classes)]
    table, chosen, conflicts = read_openimages(*inside)
    table = require_samples(table, f"OpenImages {args.labels_csv}")
    output_dir = prepare_output_dir(args.dataset_dir if args.output_dir is None else args.output_dir,
                                    "--output_dir")
    prefix = posixpath.normpath(args.image_dir.replace("\\", "/"))
    csv_path = os.path.join(output_dir, args.save_name + ".csv")
    write_lines(csv_path, csv_rows([posixpath.join(prefix, path) for path in table.paths], table.labels,
                                   chosen.mids))
    class_path = os.path.join(output_dir, args.class_file_name)
    write_lines(class_path, name_lines(chosen.mids))
    label_path = None
    if names_file is not None:
        label_path = os.path.join(output_dir, names_file)
        write_lines(label_path, name_lines(chosen.names))
    counts = table.labels.values
    summary = {"csv_path": csv_path, "class_path": class_path, "label_path": label_path,
               "num_written": len(table.paths), "num_classes": len(chosen.mids),
               "num_positive": int((counts == 1).sum()), "num_negative": int((counts == 0).sum()),
               "num_conflicting": conflicts, "num_skipped": sum(len(v) for v in table.skipped.values())}
    get_logger().info(f"Wrote {len(table.paths)} images to {csv_path} ({summary['num_positive']} positive and "
                      f"{summary['num_negative']} verified negative labels over {len(chosen.mids)} classes, "
                      f"every other label unknown; {conflicts} conflicting labels made unknown; left out: "
                      f"{table.skipped_summary()}); class MIDs in {class_path}"
                      + (f", display names in {label_path}" if label_path else ""))
    return summary


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 written, 2 a mistake in the input."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
