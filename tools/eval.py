"""Evaluate a checkpoint: the `ppq2l-eval` command from a checkout (see ppq2l/commands/evaluate.py)."""
import sys

from ppq2l.commands.evaluate import cli

if __name__ == "__main__":
    sys.exit(cli())
