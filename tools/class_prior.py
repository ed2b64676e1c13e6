"""The selective loss's class prior from a scores.npz of the training list: the `ppq2l-class-prior`
command from a checkout (see ppq2l/commands/class_prior.py)."""
import sys

from ppq2l.commands.class_prior import cli

if __name__ == "__main__":
    sys.exit(cli())
