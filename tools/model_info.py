"""Model size and cost: the `ppq2l-model-info` command from a checkout (see
ppq2l/commands/model_info.py)."""
import sys

from ppq2l.commands.model_info import cli

if __name__ == "__main__":
    sys.exit(cli())
