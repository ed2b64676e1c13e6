"""Convert an official Query2Label, ML-Decoder or ASL checkpoint into a ppq2l checkpoint:
tools/convert_checkpoint.py --from {q2l,ml_decoder,asl} --input FILE -c CFG --output OUT.pth"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from ppq2l.cli import run_cli  # noqa: E402


def main(argv=None) -> None:
    """Read and rename the official weights, build the model of the config (backbone not
    pretrained), check that they fit and write the converted checkpoint."""
    from ppq2l.arch import build_model
    from ppq2l.config import get_config
    from ppq2l.convert.official_checkpoints import (FORMATS, check_format, convert_official,
                                                    save_converted)
    from ppq2l.utils.atomic_write import prepare_output_file

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from", dest="source_format", required=True,
                        help=f"layout of the official file: {', '.join(FORMATS)}")
    parser.add_argument("--input", required=True)
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("-o", "--override", action="append", default=[])
    args = parser.parse_args(argv)
    # Format, output location and input file are checked before the (possibly large) model is
    # built, so a mistake in any of them costs nothing.
    check_format(args.source_format)
    output = prepare_output_file(args.output, "--output")
    weights = convert_official(args.source_format, args.input)
    config = get_config(args.config, args.override + ["Arch.backbone.pretrained=False"])
    model = build_model(config["Arch"])
    path = save_converted(weights, model, args.source_format, args.input, output)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
