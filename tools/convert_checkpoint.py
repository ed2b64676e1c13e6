"""Convert an official Query2Label, ML-Decoder or ASL checkpoint into a ppq2l checkpoint: the
`ppq2l-convert` command from a checkout (see ppq2l/commands/convert.py)."""
import sys

from ppq2l.commands.convert import cli

if __name__ == "__main__":
    sys.exit(cli())
