"""Write a Triton Inference Server model repository for an exported model: the
`ppq2l-export-triton` command from a checkout (see ppq2l/commands/export_triton.py)."""
import sys

from ppq2l.commands.export_triton import cli

if __name__ == "__main__":
    sys.exit(cli())
