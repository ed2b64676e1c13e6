"""Predict labels for images with a checkpoint:
python tools/infer.py -c CONFIG.yaml -o Global.pretrained_model=PATH [-o Infer.infer_imgs=PATH_OR_DIR]
Prints one JSON record per image and, with Infer.save_path, writes them as JSON lines. An image
that cannot be read gets an error record; the exit status is then 1."""
import json
import sys
from pathlib import Path
from typing import Iterator, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ppq2l.cli import run_cli  # noqa: E402
from ppq2l.config import get_config, parse_args  # noqa: E402
from ppq2l.data.image_files import collect_image_files  # noqa: E402
from ppq2l.postprocess.records import write_records  # noqa: E402
from ppq2l.errors import ConfigError, DataError  # noqa: E402
from ppq2l.utils.atomic_write import prepare_output_file  # noqa: E402

DEFAULT_POSTPROCESS = {"name": "MultiLabelThreshOutput", "threshold": 0.5}


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    """Consecutive slices of `items` of at most `size` elements."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def draw_labels(image_bgr: np.ndarray, record: dict) -> np.ndarray:
    """A copy of the image with one `name score` line per predicted label in its top-left corner."""
    canvas = image_bgr.copy()
    names = record["label_names"] or [str(class_id) for class_id in record["class_ids"]]
    scale = max(0.4, min(canvas.shape[:2]) / 500)
    for line, (name, score) in enumerate(zip(names, record["scores"])):
        origin = (5, int((line + 1) * 22 * scale))
        text = f"{name} {score:.3f}"
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 255), 1,
                    cv2.LINE_AA)
    return canvas


def save_visualization(path: Path, record: dict, folder: Path, root: Path) -> None:
    """Write the image with its labels drawn to `folder`, named after its path under `root`."""
    from ppq2l.data.transforms import decode_to_bgr

    relative = path.relative_to(root) if root.is_dir() else Path(path.name)
    target = folder / ("__".join(relative.with_suffix("").parts) + ".jpg")
    if not cv2.imwrite(str(target), draw_labels(decode_to_bgr(path.read_bytes()), record)):
        raise DataError(f"cannot write {target}")


def predict(config: dict) -> list[dict]:
    """Run the checkpoint on Infer.infer_imgs in batches; one record per file, in path order."""
    import torch

    from ppq2l.data.transforms import build_transforms
    from ppq2l.engine.components import (build_model_for_run, require_section, start_run)
    from ppq2l.export.onnx_export import inference_transforms
    from ppq2l.postprocess import build_postprocess

    weights = require_section(config, "Global.pretrained_model")
    settings = config.get("Infer") or {}
    source = Path(require_section(config, "Infer.infer_imgs"))
    batch_size = settings.get("batch_size") or 1
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"Infer.batch_size must be a positive int, got {batch_size!r}")
    compose = build_transforms(inference_transforms(config), "Infer.transforms")
    postprocess = build_postprocess(settings.get("PostProcess") or DEFAULT_POSTPROCESS)
    files = collect_image_files(source, "Infer.infer_imgs")
    if settings.get("save_path"):  # checked now, not after every image was predicted
        prepare_output_file(settings["save_path"], "Infer.save_path")
    context = start_run(config, "infer.log")
    model = build_model_for_run(context, weights).eval()
    folder = context.output_dir / "visualize"
    if settings.get("visualize"):
        folder.mkdir(parents=True, exist_ok=True)

    records: list[dict] = []
    for batch in chunks(files, batch_size):
        slots: list[dict | None] = []
        arrays, names = [], []
        for path in batch:
            try:
                arrays.append(compose(path.read_bytes()))
                names.append(path)
                slots.append(None)
            except (DataError, OSError) as error:
                slots.append({"file_name": str(path), "error": str(error)})
                context.logger.warning("%s: %s", path, error)
        if arrays:
            images = torch.from_numpy(np.stack(arrays)).to(context.device)
            if context.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), context.precision.autocast():
                scores = torch.sigmoid(model(images).float()).cpu().numpy()
            predicted = iter(postprocess(scores, [str(name) for name in names]))
            slots = [slot if slot is not None else next(predicted) for slot in slots]
        records.extend(slots)
        if settings.get("visualize"):
            for path, record in zip(batch, slots):
                if "error" not in record:
                    save_visualization(path, record, folder, source)
    return records


def main(argv=None) -> list[dict]:
    """Predict, print every record as a JSON line and save them when Infer.save_path is set."""
    args = parse_args(argv, description=__doc__)
    config = get_config(args.config, args.override)
    records = predict(config)
    for record in records:
        print(json.dumps(record))
    save_path = (config.get("Infer") or {}).get("save_path")
    if save_path:
        write_records(records, Path(save_path).expanduser())
    failed = [record["file_name"] for record in records if "error" in record]
    if failed:
        print(f"{len(failed)} of {len(records)} files could not be read: {', '.join(failed)}",
              file=sys.stderr)
    return records


def cli(argv=None) -> int:
    """Exit status: 0 when every image was predicted, 1 when some failed, 2 on a config error."""
    outcome: dict = {}

    def run(arguments) -> None:
        outcome["records"] = main(arguments)

    status = run_cli(run, argv)
    if status == 0 and any("error" in record for record in outcome["records"]):
        return 1
    return status


if __name__ == "__main__":
    sys.exit(cli())
