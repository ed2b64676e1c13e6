"""Input pipeline speed per data-loading worker: ppq2l's train and eval transforms (numpy/OpenCV,
built from a recipe's `transform_ops`) against the same steps built the way the official
Query2Label/ASL code builds them (PIL decode, torchvision Resize, PIL RandAugment and Cutout,
ToTensor, Normalize). Prints a table and a JSON line.

    python benchmarks/bench_data.py [-c configs/MultiLabelCOCO/Query2Label/Q2L_R101_448.yaml]
        [-o Key=value ...] [--images 64] [--passes 5] [--threads 1] [--sizes 640x480 480x640 640x427]

The images are COCO-sized JPEGs (640x480, 480x640, 640x427, or the --sizes given; textured,
quality 90) generated with a fixed seed into a temporary folder. For sources much larger than the
training size, compare ours with and without reduced JPEG decoding, e.g. `--sizes 4032x3024
-o DataLoader.Train.dataset.transform_ops.0.DecodeImage.reduce_to=448` (and the same for Eval).
Everything runs in this one process, one image at a time, and each call (file read included) is
timed: the figure is what one DataLoader worker delivers.
`--threads` caps OpenCV and torch threads (default 1, a worker's share when every core runs one).
Passes alternate between the two pipelines so that load from other programs hits both alike.
A last row times the check every dataset makes when it is built (one os.stat per listed image,
so a missing file is an error at the start, not hours later): `--stat_files` empty files (120,000
by default, about COCO 2014 train + val) in one folder, metadata cached; 0 skips it.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import PIL
import torch
import torchvision
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from ppq2l.config import get_config
from ppq2l.data import build_dataloader
from ppq2l.data.device_normalize import DeviceLoader
from ppq2l.data.list_dataset import find_missing_files
from ppq2l.data.transforms import build_transforms

from bench_common import write_results

IMAGE_SIZES = ((640, 480), (480, 640), (640, 427))  # (width, height), the common COCO shapes
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_images(folder: Path, count: int, seed: int,
                 sizes: tuple[tuple[int, int], ...] = IMAGE_SIZES) -> list[Path]:
    """`count` JPEGs with gradients, filled shapes, blur and sensor-like noise (so they compress
    like photographs, not like flat synthetic images)."""
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        width, height = sizes[index % len(sizes)]
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        phase = rng.uniform(0, 255, 3)
        image = np.stack([(x * 0.3 + phase[0]) % 256, (y * 0.5 + phase[1]) % 256,
                          ((x + y) * 0.2 + phase[2]) % 256], axis=-1)
        scale = max(width, height) / 640  # shapes grow with the image, so larger ones look alike
        for _ in range(12):
            center = (int(rng.integers(width)), int(rng.integers(height)))
            colour = [int(value) for value in rng.integers(0, 256, 3)]
            cv2.circle(image, center, int(rng.integers(10, 120) * scale), colour, -1)
        image = cv2.GaussianBlur(image, (0, 0), 2.0) + rng.normal(0, 8, image.shape)
        path = folder / f"{index:04d}.jpg"
        cv2.imwrite(str(path), np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


class CutoutPIL:
    """Reference Cutout as the official Q2L/ASL training code applies it: one rectangle of side
    `factor` x the image side, centred at a random point, clipped, filled with a random colour."""

    def __init__(self, factor: float = 0.5) -> None:
        self.factor = factor

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        cut_w, cut_h = int(self.factor * width + 0.5), int(self.factor * height + 0.5)
        center_x, center_y = random.randint(0, width), random.randint(0, height)
        box = (max(0, center_x - cut_w // 2), max(0, center_y - cut_h // 2),
               min(width, center_x + cut_w // 2), min(height, center_y + cut_h // 2))
        colour = (random.randint(0, 255), random.randint(0, 255), random.randint(0, 255))
        ImageDraw.Draw(image).rectangle(box, fill=colour)
        return image


def reference_pipelines(size: int) -> dict[str, Callable[[Path], torch.Tensor]]:
    """Path -> normalised CHW tensor, built from PIL and torchvision like the official code."""
    train = T.Compose([T.Resize((size, size)), CutoutPIL(0.5), T.RandAugment(), T.ToTensor(),
                       T.Normalize(MEAN, STD)])
    evaluation = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize(MEAN, STD)])

    def load(path: Path) -> Image.Image:
        with Image.open(path) as image:
            return image.convert("RGB")

    return {"train": lambda path: train(load(path)), "eval": lambda path: evaluation(load(path))}


def our_pipelines(config: dict) -> dict[str, Callable[[Path], np.ndarray]]:
    """Path -> normalised CHW array through the recipe's own train and eval transform_ops; the
    bytes are read as MultiLabelListDataset reads them."""
    loaders = config["DataLoader"]
    composed = {mode: build_transforms(loaders[section]["dataset"]["transform_ops"],
                                       f"DataLoader.{section}.dataset.transform_ops")
                for mode, section in (("train", "Train"), ("eval", "Eval"))}
    rng = np.random.default_rng(0)
    return {mode: (lambda path, ops=ops: ops(path.read_bytes(), rng)) for mode, ops in composed.items()}


def image_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480), for argparse."""
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}")
    return int(width), int(height)


def write_list_file(paths: list[Path], class_num: int) -> Path:
    """A multi-label list file naming `paths` (all in one folder) with all-zero labels."""
    list_file = paths[0].parent / "bench_list.txt"
    list_file.write_text("".join(f"{path.name}\t{','.join(['0'] * class_num)}\n" for path in paths))
    return list_file


def loader_images_per_second(config: dict, list_file: Path, workers: int, batch: int, passes: int,
                             on_device: bool) -> float:
    """Images per second that the recipe's training DataLoader (its transforms and batch
    transforms, `workers` worker processes) delivers to this process as model input, which
    means normalising the uint8 batches here when `on_device` (as the trainer does on its device)."""
    class_num = int(config["Arch"]["class_num"])
    section = copy.deepcopy(config["DataLoader"]["Train"])
    section["dataset"] = {"name": "MultiLabelListDataset", "image_root": str(list_file.parent),
                          "cls_label_path": str(list_file),
                          "transform_ops": section["dataset"]["transform_ops"]}
    section["sampler"] = {"batch_size": batch, "shuffle": True, "drop_last": False}
    section["loader"] = {"num_workers": workers, "persistent_workers": workers > 0,
                         "normalize_on_device": on_device}
    loader = build_dataloader(section, "Train", class_num, seed=0)
    delivered, started = 0, 0.0
    for epoch in range(passes + 1):  # the first pass starts the workers and is not timed
        if epoch == 1:
            started = time.perf_counter()
        for images, _ in DeviceLoader(loader, torch.device("cpu")):
            assert images.dtype == torch.float32
            delivered += images.shape[0] if epoch else 0
    return delivered / (time.perf_counter() - started)


class ConstantImages(Dataset):
    """`count` copies of one CHW image of `dtype`: a loader over it measures the hand-over alone."""

    def __init__(self, size: int, dtype: type, count: int) -> None:
        self.image = np.zeros((3, size, size), dtype=dtype)
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        return self.image


def transport_ms_per_image(size: int, dtype: type, batch: int = 64, batches: int = 12) -> float:
    """Milliseconds per image that one worker process takes to hand batches of an image that
    needs no work to this process (stacking, shared memory, receiving)."""
    loader = DataLoader(ConstantImages(size, dtype, batch * batches), batch_size=batch,
                        num_workers=1, persistent_workers=True,
                        collate_fn=lambda images: torch.from_numpy(np.stack(images)))
    for _ in loader:  # starts the worker, untimed
        pass
    started = time.perf_counter()
    for _ in loader:
        pass
    return (time.perf_counter() - started) / (batch * batches) * 1e3


def existence_check_seconds(count: int, repeats: int = 3) -> float:
    """Seconds that a dataset's existence check (one os.stat per listed file) takes for `count`
    files in one folder, as COCO lays out train2014; best of `repeats`, so the file-system
    metadata is cached (a first run on a cold network share is slower)."""
    with tempfile.TemporaryDirectory() as folder:
        paths = [os.path.join(folder, f"{index:012d}.jpg") for index in range(count)]
        for path in paths:
            open(path, "wb").close()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            assert not find_missing_files(paths)
            times.append(time.perf_counter() - started)
    return min(times)


def time_pass(pipeline: Callable[[Path], object], paths: list[Path], times: list[float]) -> object:
    """Run `pipeline` on every path, appending each call's seconds to `times`; returns the last
    output (for the shape check)."""
    output = None
    for path in paths:
        start = time.perf_counter()
        output = pipeline(path)
        times.append(time.perf_counter() - start)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default="configs/MultiLabelCOCO/Query2Label/Q2L_R101_448.yaml")
    parser.add_argument("-o", "--override", action="append", default=[], help="config override")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--sizes", nargs="+", type=image_size, default=list(IMAGE_SIZES),
                        help="source JPEG sizes as WIDTHxHEIGHT, used in turn")
    parser.add_argument("--passes", type=int, default=5, help="timed passes over the images")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV and torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2,
                        help="DataLoader workers for the loader rows (0: skip them)")
    parser.add_argument("--batch", type=int, default=16, help="batch size for the loader rows")
    parser.add_argument("--stat_files", type=int, default=120_000,
                        help="files for the dataset existence check row (0: skip it)")
    parser.add_argument("--output", default="benchmarks/results/bench_data.json")
    args = parser.parse_args()

    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    config = get_config(args.config, args.override)
    size = config["Global"]["image_shape"][1]
    ours, reference = our_pipelines(config), reference_pipelines(size)
    results: dict = {
        "config": args.config, "overrides": args.override,
        "sizes": [f"{width}x{height}" for width, height in args.sizes], "images": args.images,
        "passes": args.passes, "threads": args.threads,
        "machine": f"{platform.processor() or platform.machine()}, numpy {np.__version__}, "
                   f"opencv {cv2.__version__}, Pillow {PIL.__version__}, torch {torch.__version__}, "
                   f"torchvision {torchvision.__version__}"}
    with tempfile.TemporaryDirectory() as folder:
        paths = write_images(Path(folder), args.images, args.seed, tuple(args.sizes))
        for mode in ("eval", "train"):
            for pipeline in (ours[mode], reference[mode]):  # warm-up: caches, lazy imports
                time_pass(pipeline, paths[:4], [])
            ours_times: list[float] = []
            reference_times: list[float] = []
            for _ in range(args.passes):
                ours_out = time_pass(ours[mode], paths, ours_times)
                reference_out = time_pass(reference[mode], paths, reference_times)
            expected = (3, size, size)
            assert ours_out.shape == expected and ours_out.dtype == np.float32, ours_out.shape
            assert tuple(reference_out.shape) == expected and reference_out.dtype == torch.float32
            row = {"ours_img_s": len(ours_times) / sum(ours_times),
                   "reference_img_s": len(reference_times) / sum(reference_times),
                   "ours_median_ms": statistics.median(ours_times) * 1e3,
                   "reference_median_ms": statistics.median(reference_times) * 1e3}
            row["speedup"] = row["ours_img_s"] / row["reference_img_s"]
            if mode == "eval":  # same image, different resize kernels: how far apart the inputs are
                row["mean_abs_difference"] = float(np.abs(ours_out - reference_out.numpy()).mean())
            results[mode] = row
        if args.workers:
            # The first loader of a process is slower whatever it carries (shared-memory warm-up),
            # so one untimed run goes first; then each variant runs twice, in ABBA order, best kept.
            list_file = write_list_file(paths, int(config["Arch"]["class_num"]))
            measure = lambda on_device, passes=args.passes: loader_images_per_second(  # noqa: E731
                config, list_file, args.workers, args.batch, passes, on_device)
            measure(False, passes=1)
            runs = {on_device: [] for on_device in (False, True)}
            for on_device in (False, True, True, False):
                runs[on_device].append(measure(on_device))
            loader_row = {"workers": args.workers, "batch": args.batch,
                          "float32_img_s": max(runs[False]), "uint8_img_s": max(runs[True])}
            loader_row["speedup"] = loader_row["uint8_img_s"] / loader_row["float32_img_s"]
            transport = {np.uint8: [], np.float32: []}
            for dtype in (np.uint8, np.float32, np.float32, np.uint8):  # ABBA, best kept
                transport[dtype].append(transport_ms_per_image(size, dtype))
            loader_row["transport_uint8_ms"] = min(transport[np.uint8])
            loader_row["transport_float32_ms"] = min(transport[np.float32])
            results["loader"] = loader_row
    if args.stat_files:
        results["existence_check"] = {"files": args.stat_files,
                                      "seconds": existence_check_seconds(args.stat_files)}
    print(f"{'pipeline':>8} {'ours img/s':>11} {'reference img/s':>16} {'ours ms':>8} "
          f"{'reference ms':>13} {'speed-up':>9}")
    for mode in ("train", "eval"):
        row = results[mode]
        print(f"{mode:>8} {row['ours_img_s']:>11.1f} {row['reference_img_s']:>16.1f} "
              f"{row['ours_median_ms']:>8.2f} {row['reference_median_ms']:>13.2f} {row['speedup']:>8.2f}x")
    if "loader" in results:
        row = results["loader"]
        print(f"training DataLoader, {row['workers']} workers, batch {row['batch']}: float32 batches "
              f"{row['float32_img_s']:.1f} img/s, uint8 batches + normalize_on_device "
              f"{row['uint8_img_s']:.1f} img/s ({row['speedup']:.2f}x)")
        print(f"hand-over alone (one worker, batch 64, {size} px images needing no work): uint8 "
              f"{row['transport_uint8_ms']:.2f} ms, float32 {row['transport_float32_ms']:.2f} ms per image")
    if "existence_check" in results:
        row = results["existence_check"]
        print(f"dataset existence check (os.stat per listed file, cached metadata): {row['files']} "
              f"files in {row['seconds']:.2f} s")
    write_results(results, args.output)


if __name__ == "__main__":
    main()
