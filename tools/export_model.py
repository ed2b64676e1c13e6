"""Export a checkpoint to ONNX for deployment: the `ppq2l-export` command from a checkout (see
ppq2l/commands/export.py)."""
import sys

from ppq2l.commands.export import cli

if __name__ == "__main__":
    sys.exit(cli())
