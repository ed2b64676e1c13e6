"""Train a model: the `ppq2l-train` command from a checkout (see ppq2l/commands/train.py)."""
import sys

from ppq2l.commands.train import cli

if __name__ == "__main__":
    sys.exit(cli())
