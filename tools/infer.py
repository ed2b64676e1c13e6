"""Predict labels for images with a checkpoint: the `ppq2l-infer` command from a checkout (see
ppq2l/commands/infer.py)."""
import sys

from ppq2l.commands.infer import cli

if __name__ == "__main__":
    sys.exit(cli())
