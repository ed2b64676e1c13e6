"""Pascal VOC -> multi-label list (`JPEGImages/<id>.jpg<TAB>1,0,-1,...`, 20 classes in the
official order): ppq2l-voc-lists (or python tools/create_voc_lists.py)
    --dataset_dir dataset/VOCdevkit/VOC2007 --split trainval --save_name voc2007_trainval
    [--source imagesets|annotations] [--difficult unknown|positive] [--output_dir DIR]
    [--save_label_name] [--label_file_name labels.txt]
The list's paths are relative to --dataset_dir, the image_root of a MultiLabelListDataset."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from ppq2l.cli import run_cli
from ppq2l.data.label_table import require_samples
from ppq2l.data.list_writer import add_output_arguments, write_converted
from ppq2l.data.voc import DIFFICULT_MODES, SOURCES, read_voc


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The converter's options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True,
                        help="the VOC20XX folder (JPEGImages/, Annotations/, ImageSets/Main/)")
    parser.add_argument("--split", required=True, help="train, val, trainval or test")
    parser.add_argument("--source", choices=SOURCES, default="imagesets",
                        help="labels from ImageSets/Main/<class>_<split>.txt or from the XML files")
    parser.add_argument("--difficult", choices=DIFFICULT_MODES, default="unknown",
                        help="a class with only difficult objects in an image: unknown (-1) or positive")
    add_output_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the list; returns the summary."""
    args = parse_args(argv)
    where = f"VOC {args.dataset_dir} split {args.split}"
    table = require_samples(read_voc(args.dataset_dir, args.split, args.source, args.difficult), where)
    return write_converted(table, args, where)


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 written, 2 a mistake in the input."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
