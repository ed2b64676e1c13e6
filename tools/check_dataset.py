"""Check the datasets of a config before training: the `ppq2l-check-dataset` command from a checkout
(see ppq2l/commands/check_dataset.py)."""
import sys

from ppq2l.commands.check_dataset import cli

if __name__ == "__main__":
    sys.exit(cli())
