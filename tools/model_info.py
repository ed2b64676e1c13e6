"""Parameter count and GFLOPs of a config's model: python tools/model_info.py -c CONFIG.yaml
(add -o Arch.backbone.pretrained=false to skip downloading weights)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from ppq2l.cli import run_cli  # noqa: E402
from ppq2l.config import get_config, parse_args  # noqa: E402


def main(argv=None) -> None:
    """Print total/trainable parameters and GFLOPs (multiply-adds) at Global.image_shape."""
    args = parse_args(argv, description=__doc__)
    config = get_config(args.config, args.override)  # mistakes answer before the heavy imports
    from ppq2l.utils.model_info import model_info_from_config

    print(model_info_from_config(config).report())


if __name__ == "__main__":
    sys.exit(run_cli(main))
