"""NUS-WIDE -> multi-label list: the `ppq2l-nuswide-lists` command from a checkout (see
ppq2l/commands/nuswide_lists.py)."""
import sys

from ppq2l.commands.nuswide_lists import cli

if __name__ == "__main__":
    sys.exit(cli())
