"""Predict labels for images with a checkpoint: ppq2l-infer (or python tools/infer.py)
-c CONFIG.yaml -o Global.pretrained_model=PATH [-o Infer.infer_imgs=PATH_OR_DIR]
Prints one JSON record per image and, with Infer.save_path, writes them as JSON lines. An image
that cannot be read, or whose scores are NaN/Inf, gets an error record; the exit status is then 1.
With -o Infer.explain=True [-o Infer.explain_dir=DIR] it also draws every predicted label's map
over its image (see ppq2l.explain.render.OverlayWriter)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from ppq2l.config import get_config, parse_args
from ppq2l.data.image_files import collect_image_files
from ppq2l.errors import ConfigError
from ppq2l.postprocess.records import print_records, run_records_cli, write_records
from ppq2l.predict import Predictor
from ppq2l.utils.atomic_write import prepare_output_dir, prepare_output_file


def predict(config: dict) -> list[dict]:
    """Run the checkpoint on Infer.infer_imgs; one record per file, in path order."""
    from ppq2l.engine.components import require_section, start_run
    from ppq2l.engine.torch_predictor import torch_backend
    from ppq2l.postprocess.visualize import save_visualizations

    weights = require_section(config, "Global.pretrained_model")
    settings = config.get("Infer") or {}
    source = Path(require_section(config, "Infer.infer_imgs"))
    batch_size = settings.get("batch_size") or 1
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"Infer.batch_size must be a positive int, got {batch_size!r}")
    files = collect_image_files(source, "Infer.infer_imgs")
    if settings.get("save_path"):  # checked now, not after every image was predicted
        prepare_output_file(settings["save_path"], "Infer.save_path")
    explain_dir = None
    if settings.get("explain") and settings.get("explain_dir"):  # so is the maps' folder
        explain_dir = prepare_output_dir(settings["explain_dir"], "Infer.explain_dir")
    context = start_run(config, "infer.log")
    predictor = Predictor.from_backend(torch_backend(context, weights), batch_size=batch_size,
                                       logger=context.logger)
    overlays = explain_maps(predictor, settings, context, source, explain_dir)
    records = predictor(files)
    if overlays is not None:
        context.logger.info("per-label maps of %d images in %s", overlays.images, overlays.folder)
    if settings.get("visualize"):
        save_visualizations(files, records, context.output_dir / "visualize", source)
    return records


def explain_maps(predictor: Predictor, settings: dict, context: Any, source: Path,
                 folder: Path | None) -> Any:
    """With Infer.explain, the overlay writer the predictor now calls for every batch, writing
    into `folder` (None: output_dir/explain); None otherwise."""
    from ppq2l.explain.render import OverlayWriter

    if not settings.get("explain"):
        if settings.get("explain_dir"):
            context.logger.warning("Infer.explain_dir is set but Infer.explain is not true: no "
                                   "maps are written (add -o Infer.explain=True)")
        return None
    folder = folder or prepare_output_dir(context.output_dir / "explain", "Infer.explain_dir")
    writer = OverlayWriter(folder, predictor.transforms.ops, predictor.postprocess.label_names,
                           root=source, top_k=settings.get("explain_top_k") or 3)
    predictor.explain_with(writer)
    return writer


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Predict, print every record as a JSON line and save them when Infer.save_path is set."""
    args = parse_args(argv, description=__doc__)
    config = get_config(args.config, args.override)
    records = predict(config)
    print_records(records)
    save_path = (config.get("Infer") or {}).get("save_path")
    if save_path:
        write_records(records, Path(save_path).expanduser())
    return records


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 when every image was predicted, 1 when some failed, 2 on a config error."""
    return run_records_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
