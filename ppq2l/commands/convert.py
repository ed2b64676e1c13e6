"""Convert an official Query2Label, ML-Decoder or ASL checkpoint into a ppq2l checkpoint:
ppq2l-convert (or python tools/convert_checkpoint.py) --from {q2l,ml_decoder,asl} --input FILE
-c CONFIG.yaml --output OUT.pth"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ppq2l.cli import run_cli


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """--from, --input, -c, --output and repeatable -o."""
    from ppq2l.convert.official_checkpoints import FORMATS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from", dest="source_format", required=True,
                        help=f"layout of the official file: {', '.join(FORMATS)}")
    parser.add_argument("--input", required=True)
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("-o", "--override", action="append", default=[])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Path:
    """Read and rename the official weights, build the model of the config (backbone not
    pretrained), check that they fit and write the converted checkpoint."""
    args = parse_arguments(argv)
    from ppq2l.arch import build_model
    from ppq2l.config import get_config
    from ppq2l.convert.official_checkpoints import check_format, convert_official, save_converted
    from ppq2l.utils.atomic_write import prepare_output_file

    # Format, output location and input file are checked before the (possibly large) model is
    # built, so a mistake in any of them costs nothing.
    check_format(args.source_format)
    output = prepare_output_file(args.output, "--output")
    weights = convert_official(args.source_format, args.input)
    config = get_config(args.config, args.override + ["Arch.backbone.pretrained=False"])
    model = build_model(config["Arch"])
    path = save_converted(weights, model, args.source_format, args.input, output)
    print(f"wrote {path}")
    return path


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 converted, 2 a mistake in the input (nothing written)."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
