"""Export a checkpoint to ONNX for deployment:
python tools/export_model.py -c CONFIG.yaml -o Global.pretrained_model=PATH -o Global.save_inference_dir=DIR
writes DIR/model.onnx (with its preprocessing and label metadata) and DIR/inference.yml, then
checks onnxruntime against torch on random inputs."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from ppq2l.cli import run_cli  # noqa: E402
from ppq2l.config import get_config, parse_args  # noqa: E402


def main(argv=None) -> dict:
    """Export Global.pretrained_model and print the files and the onnxruntime/torch differences."""
    args = parse_args(argv, description=__doc__)
    config = get_config(args.config, args.override)  # mistakes answer before the heavy imports
    from ppq2l.export.onnx_export import export_from_config

    summary = export_from_config(config)
    print(f"saved {summary['onnx']} and {summary['inference_yml']}")
    for shape, difference in summary["max_abs_diff"].items():
        print(f"onnxruntime vs torch, input {shape}: max abs diff {difference:.3g}")
    return summary


if __name__ == "__main__":
    sys.exit(run_cli(main))
