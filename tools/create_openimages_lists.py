"""OpenImages image-level labels -> CSV: the `ppq2l-openimages-lists` command from a checkout (see
ppq2l/commands/openimages_lists.py)."""
import sys

from ppq2l.commands.openimages_lists import cli

if __name__ == "__main__":
    sys.exit(cli())
