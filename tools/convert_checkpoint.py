"""Convert an official checkpoint: python tools/convert_checkpoint.py --from q2l --input FILE -c CFG --output OUT.pth"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from ppq2l.cli import run_cli  # noqa: E402


def main(argv=None) -> None:
    """Build the model of the config (backbone not pretrained) and write the converted weights."""
    from ppq2l.arch import build_model
    from ppq2l.config import get_config
    from ppq2l.convert.official_checkpoints import FORMATS, convert_checkpoint

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from", dest="source_format", required=True, choices=FORMATS)
    parser.add_argument("--input", required=True)
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("-o", "--override", action="append", default=[])
    args = parser.parse_args(argv)
    config = get_config(args.config, args.override + ["Arch.backbone.pretrained=False"])
    path = convert_checkpoint(args.source_format, args.input, build_model(config["Arch"]), args.output)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
