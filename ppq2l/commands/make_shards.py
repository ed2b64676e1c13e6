"""Write the dataset of a config as tar shards for ShardedDataset: ppq2l-make-shards (or python
tools/make_shards.py) -c CONFIG.yaml [-o Key.sub=value ...] --split Train --output_dir DIR
    [--name train] [--samples_per_shard 1000] [--seed 0] [--keep_order]
Any ppq2l dataset (list, CSV, COCO, VOC, NUS-WIDE, OpenImages) becomes DIR/<name>-000000.tar, ...
(webdataset layout: `<key>.json` labels and source, `<key>.<ext>` the image file's bytes as they
were, so decoding gives the same pixels) and DIR/shards.json, written last. Samples are written
in a random order drawn from --seed (training then only needs to shuffle within windows), or in
dataset order with --keep_order. Copy the folder anywhere a URL reaches (the shard names in the
manifest are relative to it) and train with {name: ShardedDataset, shards: URL/shards.json}."""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from ppq2l.checks import integer
from ppq2l.cli import run_cli
from ppq2l.config import get_config
from ppq2l.errors import ConfigError
from ppq2l.utils.logger import get_logger

SPLITS = ("Train", "Eval")
LABELS_MEMBER = "json"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """-c/-o as every tool, and the shard options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", required=True, help="path to the YAML config")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="Key.sub=value",
                        help="override a config value (repeatable)")
    parser.add_argument("--split", choices=SPLITS, default="Train", help="DataLoader.<split>.dataset to write")
    parser.add_argument("--output_dir", required=True, help="folder for the shards and shards.json")
    parser.add_argument("--name", default=None, help="shard file prefix (default: the split, lower case)")
    parser.add_argument("--samples_per_shard", type=int, default=1000, help="samples per tar file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the order the samples are written in")
    parser.add_argument("--keep_order", action="store_true", help="write the samples in dataset order")
    return parser.parse_args(argv)


def image_extension(path: str) -> str:
    """The member extension for an image file: its own suffix, lower case ('img' without one)."""
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    return suffix if suffix and suffix != LABELS_MEMBER and suffix.isalnum() else "img"


def class_names_of(dataset: Any, config: dict) -> list[str] | None:
    """The dataset's class names, or those of Infer.PostProcess.class_id_map_file, if any."""
    names = getattr(dataset, "class_names", None)
    if names:
        return list(names)
    label_file = ((config.get("Infer") or {}).get("PostProcess") or {}).get("class_id_map_file")
    if label_file:
        from ppq2l.data.label_map import read_label_map

        return read_label_map(label_file, int(config["Arch"]["class_num"]))
    return None


def write_shard(path: str, samples: list[tuple[str, str, bytes, bytes]]) -> None:
    """One tar file of (key, extension, image bytes, labels json) samples, written atomically."""
    import webdataset

    from ppq2l.utils.atomic_write import atomic_output

    with atomic_output(path, "wb") as handle:
        writer = webdataset.TarWriter(handle, encoder=False, mtime=0.0)  # fixed mtime: identical reruns
        for key, extension, image, labels in samples:
            writer.write({"__key__": key, extension: image, LABELS_MEMBER: labels})
        writer.close()


def make_shards(config: dict, split: str, output_dir: str, name: str | None = None,
                samples_per_shard: int = 1000, seed: int | None = 0, made_from: str = "") -> dict[str, Any]:
    """Write the shards and the manifest of `DataLoader.<split>.dataset`; `seed` None keeps the
    dataset's order. Returns the summary."""
    from ppq2l.data.dataloader import build_dataset
    from ppq2l.data.image_files import read_image_bytes
    from ppq2l.data.label_store import label_counts
    from ppq2l.data.shard_reader import MANIFEST_FORMAT, MANIFEST_VERSION, encode_labels, sample_key
    from ppq2l.data.sharded_dataset import ShardedDataset
    from ppq2l.engine.components import require_section, write_json
    from ppq2l.utils.atomic_write import prepare_output_dir

    samples_per_shard = integer(samples_per_shard, "--samples_per_shard", minimum=1)
    where = f"DataLoader.{split}.dataset"
    dataset = build_dataset(require_section(config, where), int(config["Arch"]["class_num"]), where)
    if isinstance(dataset, ShardedDataset):
        raise ConfigError(f"{where} is already a ShardedDataset; give the dataset the shards were made from")
    folder = prepare_output_dir(output_dir, "--output_dir")
    # A re-run rewrites the shard files; an earlier manifest must not outlive a run that fails
    # half-way, pointing at shards that hold part of the new samples. The new one comes last.
    (folder / "shards.json").unlink(missing_ok=True)
    name = name or split.lower()
    order = np.arange(len(dataset)) if seed is None else np.random.default_rng(seed).permutation(len(dataset))
    shards, batch, started = [], [], time.perf_counter()
    for written, index in enumerate(tqdm(order, desc="samples", unit="img")):
        path = dataset.image_paths[index]
        image = read_image_bytes(path, dataset.sources[index])
        labels = encode_labels(np.asarray(dataset.labels[index], dtype=np.int8), dataset.sources[index])
        batch.append((sample_key(written), image_extension(path), image, labels))
        if len(batch) == samples_per_shard or written == len(order) - 1:
            shard_name = f"{name}-{len(shards):06d}.tar"
            write_shard(os.path.join(folder, shard_name), batch)
            shards.append({"url": shard_name, "count": len(batch)})
            batch = []
    counts = label_counts(dataset.labels)
    manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "class_num": dataset.class_num,
                "class_names": class_names_of(dataset, config), "num_samples": len(dataset),
                "shards": shards, "order_seed": seed, "made_from": f"{where} of {made_from}".strip(),
                "label_counts": {"positives": counts.positives.tolist(), "negatives": counts.negatives.tolist(),
                                 "unknown": counts.unknown.tolist()}}
    manifest_path = folder / "shards.json"
    write_json(manifest_path, manifest)
    get_logger().info("wrote %d samples in %d shards of up to %d to %s in %.0f s (%s); manifest %s",
                      len(dataset), len(shards), samples_per_shard, folder, time.perf_counter() - started,
                      "dataset order" if seed is None else f"order drawn from seed {seed}", manifest_path)
    return {"manifest": str(manifest_path), "num_samples": len(dataset), "num_shards": len(shards)}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Read the config and write the shards."""
    args = parse_args(argv)
    config = get_config(args.config, args.override)
    return make_shards(config, args.split, args.output_dir, args.name, args.samples_per_shard,
                       None if args.keep_order else args.seed, made_from=args.config)


def cli(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 written, 2 a mistake in the input."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
