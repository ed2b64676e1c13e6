"""Hide a share of a list file's labels as unknown (-1): the `ppq2l-hide-labels` command from a
checkout (see ppq2l/commands/hide_labels.py)."""
import sys

from ppq2l.commands.hide_labels import cli

if __name__ == "__main__":
    sys.exit(cli())
