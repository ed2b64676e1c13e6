"""Write an evaluation report from saved scores: the `ppq2l-report` command from a checkout (see
ppq2l/commands/report.py)."""
import sys

from ppq2l.commands.report import cli

if __name__ == "__main__":
    sys.exit(cli())
