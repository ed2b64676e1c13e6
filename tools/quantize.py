"""INT8 quantization of an exported model, gated on its eval mAP: the `ppq2l-quantize` command
from a checkout (see ppq2l/commands/quantize.py).
python tools/quantize.py --model_dir inference/Q2L_demo_shapes --save_dir inference/Q2L_demo_shapes_int8 \
    -c configs/quick_start/Q2L_demo_shapes.yaml"""
import sys

from ppq2l.commands.quantize import cli

if __name__ == "__main__":
    sys.exit(cli())
