"""Fit per-class thresholds: the `ppq2l-calibrate` command from a checkout (see
ppq2l/commands/calibrate.py)."""
import sys

from ppq2l.commands.calibrate import cli

if __name__ == "__main__":
    sys.exit(cli())
