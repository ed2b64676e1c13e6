"""Deploy predictor throughput: end-to-end images/s of `ppq2l.Predictor` over a folder (read,
decode, preprocess, batch, onnxruntime, postprocess, records) against onnxruntime alone on
pre-made tensors of the same model, batch size and threads; the ratio is what the pipeline keeps
of the model's own speed. Rows for several numbers of preprocessing threads. Prints a table and a
JSON line. No torch.

    python benchmarks/bench_predictor.py [--model_dir inference/Q2L_demo_shapes]
        [--images dataset/demo_shapes/val2017] [--photos N] [--batch 16] [--threads 2]
        [--workers 0 1 2] [--limit 500] [--repeats 3]
--photos N times N synthetic 640x480 JPEG photos instead of --images (decoding dominates there;
--limit is then N).
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime

from ppq2l.data.image_files import iter_image_files
from ppq2l.export.onnx_runtime import onnx_backend
from ppq2l.predict import Predictor

from bench_common import write_results


def make_photos(folder: Path, count: int) -> Path:
    """`count` photo-sized (640x480) JPEGs of smooth random content in `folder`."""
    rng = np.random.default_rng(0)
    for index in range(count):
        noise = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
        assert cv2.imwrite(str(folder / f"photo{index:05d}.jpg"), cv2.GaussianBlur(noise, (9, 9), 3))
    return folder


def end_to_end(predictor: Predictor, images: Path, limit: int) -> float:
    """Seconds for the predictor to give the records of the first `limit` files of `images`."""
    files = itertools.islice(iter_image_files(images, "--images"), limit)
    began = time.perf_counter()
    count = sum(1 for _ in predictor.iter_records((str(path), path) for path in files))
    seconds = time.perf_counter() - began
    assert count == limit, f"{images} has {count} files, fewer than --limit {limit}"
    return seconds


def model_alone(predictor: Predictor, images: Path, limit: int) -> float:
    """Seconds for onnxruntime alone to score `limit` images as the same batches of tensors
    made beforehand (the first batch of the folder, repeated)."""
    files = list(itertools.islice(iter_image_files(images, "--images"), predictor.batch_size))
    batch = np.stack([predictor.preprocess(path) for path in files])
    runs, rest = divmod(limit, predictor.batch_size)
    began = time.perf_counter()
    for _ in range(runs):
        predictor.backend.run(batch)
    if rest:
        predictor.backend.run(batch[:rest])
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", default="inference/Q2L_demo_shapes")
    parser.add_argument("--images", default="dataset/demo_shapes/val2017")
    parser.add_argument("--photos", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="benchmarks/results/bench_predictor.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        if args.photos:
            args.limit = args.photos
        images = make_photos(Path(scratch), args.photos) if args.photos else Path(args.images)
        backend = onnx_backend(args.model_dir, cpu_num_threads=args.threads)
        predictors = {workers: Predictor.from_backend(backend, batch_size=args.batch, num_workers=workers)
                      for workers in args.workers}
        predictors[args.workers[0]].warm_up([images], rounds=3)
        timings: dict[str, list[float]] = {"onnxruntime alone": []}
        timings.update({f"predictor, {w} threads": [] for w in args.workers})
        for _ in range(args.repeats):  # interleaved, so a busy moment of the machine hits all rows
            timings["onnxruntime alone"].append(model_alone(predictors[args.workers[0]], images, args.limit))
            for workers, predictor in predictors.items():
                timings[f"predictor, {workers} threads"].append(end_to_end(predictor, images, args.limit))
    alone = args.limit / statistics.median(timings["onnxruntime alone"])
    rows = []
    for name, seconds in timings.items():
        rate = args.limit / statistics.median(seconds)
        rows.append({"row": name, "images_per_second": rate, "of_onnxruntime_alone": rate / alone,
                     "seconds": seconds})
    results = {"model_dir": args.model_dir, "images": "synthetic 640x480 JPEG" if args.photos else args.images,
               "images_timed": args.limit, "batch": args.batch, "onnxruntime_threads": args.threads,
               "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "rows": rows,
               "machine": {"processor": platform.processor() or platform.machine(),
                           "onnxruntime": onnxruntime.__version__, "device": backend.device}}
    print(f"{args.limit} images of {results['images']}, batch {args.batch}, {args.threads} onnxruntime "
          f"threads on {backend.device}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'':<24} {'img/s':>9} {'of ORT alone':>12}")
    for row in rows:
        print(f"{row['row']:<24} {row['images_per_second']:>9.1f} {row['of_onnxruntime_alone']:>11.2f}x")
    write_results(results, args.output)


if __name__ == "__main__":
    main()
