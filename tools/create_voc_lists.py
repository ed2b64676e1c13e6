"""Pascal VOC -> multi-label list: the `ppq2l-voc-lists` command from a checkout (see
ppq2l/commands/voc_lists.py)."""
import sys

from ppq2l.commands.voc_lists import cli

if __name__ == "__main__":
    sys.exit(cli())
