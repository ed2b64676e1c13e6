"""Generate the synthetic shapes demo dataset (COCO format): the `ppq2l-make-demo-dataset` command
from a checkout (see ppq2l/commands/make_demo_dataset.py)."""
import sys

from ppq2l.commands.make_demo_dataset import cli

if __name__ == "__main__":
    sys.exit(cli())
