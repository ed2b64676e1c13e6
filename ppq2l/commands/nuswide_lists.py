"""NUS-WIDE -> multi-label list (81 concepts, Concepts81 order): ppq2l-nuswide-lists (or python
tools/create_nuswide_lists.py) --dataset_dir dataset/NUS-WIDE --split train --save_name nus_train
    [--layout official|csv] [--csv_path nus_wid_data.csv] [--image_dir Flickr] [--output_dir DIR]
    [--save_label_name] [--label_file_name labels.txt]
official: --dataset_dir holds ImageList/ and Groundtruth/AllLabels/, splits train, test, all;
csv: ML-Decoder's nus_wid_data.csv (--csv_path, relative to --dataset_dir), splits train, val, all.
The images are looked for under --dataset_dir/--image_dir (default Flickr for official, the
dataset folder itself for csv); missing ones are reported and left out. The list's paths are
relative to --dataset_dir, the image_root of a MultiLabelListDataset."""
from __future__ import annotations

import argparse
import os
import posixpath
import sys
from typing import Any, Sequence

from ppq2l.cli import run_cli
from ppq2l.data.label_table import require_samples
from ppq2l.data.list_writer import add_output_arguments, write_converted
from ppq2l.data.nus_wide import LAYOUTS, read_nus_wide


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The converter's options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True, help="the NUS-WIDE folder")
    parser.add_argument("--split", required=True, help="train, test or all (csv: train, val or all)")
    parser.add_argument("--layout", choices=LAYOUTS, default="official", help="the files the labels come from")
    parser.add_argument("--csv_path", default=None, help="csv layout: the CSV, relative to --dataset_dir")
    parser.add_argument("--image_dir", default=None, help="image folder, relative to --dataset_dir")
    add_output_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the list; returns the summary."""
    args = parse_args(argv)
    image_dir = args.image_dir if args.image_dir is not None else "Flickr" if args.layout == "official" else "."
    csv_path = None if args.csv_path is None else os.path.join(args.dataset_dir, args.csv_path)
    table, _ = read_nus_wide(args.layout, args.split, args.dataset_dir, csv_path,
                                      os.path.join(args.dataset_dir, image_dir))
    where = f"NUS-WIDE {args.dataset_dir} split {args.split}"
    prefix = posixpath.normpath(image_dir.replace("\\", "/"))
    table = require_samples(table, where)._replace(
        paths=[path if prefix == "." else posixpath.join(prefix, path) for path in table.paths])
    return write_converted(table, args, where)


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 written, 2 a mistake in the input."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
