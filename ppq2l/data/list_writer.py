"""The files a list converter writes: the multi-label list (`path<TAB>1,0,-1,...` per image, one
line each, the last one too) and the class-name file (`<index> <name>`), with the command-line
options and the summary every converter shares. Files are written atomically."""
from __future__ import annotations

import argparse
import os
from typing import Any, Iterable

import numpy as np

from ppq2l.data.label_table import LabelTable
from ppq2l.errors import ConfigError, DataError
from ppq2l.utils.atomic_write import atomic_output, prepare_output_dir
from ppq2l.utils.logger import get_logger

DEFAULT_LABEL_FILE = "labels.txt"


def add_output_arguments(parser: argparse.ArgumentParser, save_name_default: str | None = None) -> None:
    """--save_name (required unless `save_name_default` says what it defaults to), --output_dir,
    --save_label_name and --label_file_name."""
    if save_name_default is None:
        parser.add_argument("--save_name", required=True, help="list file name without .txt")
    else:
        parser.add_argument("--save_name", default=None,
                            help=f"list file name without .txt; {save_name_default} if not given")
    parser.add_argument("--output_dir", default=None,
                        help="where the files are written; --dataset_dir if not given")
    parser.add_argument("--save_label_name", action="store_true",
                        help=f"also write <output_dir>/{DEFAULT_LABEL_FILE} ('<index> <name>' per "
                             "line, the class order of the list's label columns)")
    parser.add_argument("--label_file_name", default=None,
                        help=f"name of that class-name file instead of {DEFAULT_LABEL_FILE} "
                             "(implies --save_label_name)")


def label_file_name(args: argparse.Namespace, list_name: str) -> str | None:
    """The class-name file to write (None: none), checked to be a plain name in the folder."""
    if args.label_file_name is None and not args.save_label_name:
        return None
    name = DEFAULT_LABEL_FILE if args.label_file_name is None else args.label_file_name
    check_label_file_name(name, list_name)
    return name


def check_label_file_name(name: str, list_name: str) -> None:
    """A ConfigError unless `name` is a plain file name other than the list's."""
    if not name or os.path.basename(name) != name or name in (".", ".."):
        raise ConfigError(f"--label_file_name must be a file name inside --output_dir, such as "
                          f"labels.txt, got {name!r}")
    if name == list_name:
        raise ConfigError(f"--label_file_name {name} is also the list file's name (--save_name); "
                          "choose another name for one of them")


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> None:
    """Write each line followed by a newline, through a temporary file and a rename."""
    with atomic_output(path, "w") as handle:
        for line in lines:
            handle.write(line + "\n")


def list_lines(paths: list[str], labels: Any) -> Iterable[str]:
    """`path<TAB>labels` rows; a path with a tab or line break cannot be written."""
    for position, path in enumerate(paths):
        if any(character in path for character in "\t\r\n"):
            raise DataError(f"image path {path!r} contains a tab or line break, which the list "
                            "format cannot hold")
        yield f"{path}\t{','.join(map(str, np.asarray(labels[position]).tolist()))}"


def name_lines(names: list[str]) -> list[str]:
    """`<index> <name>` rows; a name must be one non-empty line."""
    for name in names:
        if not name.strip() or any(character in name for character in "\r\n"):
            raise DataError(f"class name {name!r} is empty or has a line break, which the label "
                            "file cannot hold")
    return [f"{index} {name}" for index, name in enumerate(names)]


def write_converted(table: LabelTable, args: argparse.Namespace, source: str) -> dict[str, Any]:
    """Write the list (and the class names when asked) of `table` into `--output_dir`
    (default `--dataset_dir`); log and return the summary."""
    names_file = label_file_name(args, args.save_name + ".txt")
    output_dir = prepare_output_dir(args.dataset_dir if args.output_dir is None else args.output_dir,
                                    "--output_dir")
    list_path = os.path.join(output_dir, args.save_name + ".txt")
    write_lines(list_path, list_lines(table.paths, table.labels))
    label_path = None
    if names_file is not None:
        label_path = os.path.join(output_dir, names_file)
        write_lines(label_path, name_lines(table.class_names))
    summary = {"list_path": list_path, "label_path": label_path, "num_written": len(table.paths),
               "num_skipped": sum(len(items) for items in table.skipped.values()),
               "num_classes": len(table.class_names), "num_unknown_labels": table.unknown_count()}
    get_logger().info(f"Wrote {len(table.paths)} images of {source} to {list_path}; left out: "
                      f"{table.skipped_summary()}; {len(table.class_names)} classes; "
                      f"{summary['num_unknown_labels']} unknown labels (-1)"
                      + (f"; class names in {label_path}" if label_path else ""))
    return summary
