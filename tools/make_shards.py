"""Write a config's dataset as tar shards: the `ppq2l-make-shards` command from a checkout (see
ppq2l/commands/make_shards.py)."""
import sys

from ppq2l.commands.make_shards import cli

if __name__ == "__main__":
    sys.exit(cli())
