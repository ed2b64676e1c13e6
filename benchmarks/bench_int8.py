"""INT8 speed: the float export and its tools/quantize.py model under onnxruntime's CPU provider, on
the same random input batches; images/s per batch size and the int8 speed-up. The two models are
timed in alternation, so a busy moment of a shared machine slows both. Prints a table and a JSON
line. No torch.

    python benchmarks/bench_int8.py --fp32 inference/Q2L_demo_shapes --int8 inference/Q2L_demo_shapes_int8
        [--batches 1 16] [--threads 2] [--rounds 5] [--repeats 10]
"""
from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics

import numpy as np
import onnxruntime

from ppq2l.export.metadata import DESCRIPTION_FILE, read_inference_yml
from ppq2l.export.onnx_runtime import onnx_backend

from bench_common import median_seconds, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", required=True, help="export folder of the float model")
    parser.add_argument("--int8", required=True, help="folder written by tools/quantize.py")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="alternations of the two models")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per round")
    parser.add_argument("--output", default="benchmarks/results/bench_int8.json")
    args = parser.parse_args()

    height, width = read_inference_yml(os.path.join(args.fp32, DESCRIPTION_FILE))["input_size"]
    runs = {name: onnx_backend(folder, cpu_num_threads=args.threads).run
            for name, folder in (("fp32", args.fp32), ("int8", args.int8))}
    rng = np.random.default_rng(0)
    rows = []
    for batch in args.batches:
        images = rng.standard_normal((batch, 3, height, width)).astype(np.float32)
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                seconds[name].append(median_seconds(functools.partial(run, images), args.repeats, warmup=2))
        rate = {name: batch / statistics.median(values) for name, values in seconds.items()}
        rows.append({"batch": batch, "fp32_images_per_second": rate["fp32"],
                     "int8_images_per_second": rate["int8"], "speedup": rate["int8"] / rate["fp32"]})
    results = {"fp32": args.fp32, "int8": args.int8, "input": [height, width], "threads": args.threads,
               "load_average": os.getloadavg(), "rows": rows,
               "machine": {"processor": platform.processor() or platform.machine(),
                           "onnxruntime": onnxruntime.__version__}}
    print(f"{args.fp32} vs {args.int8}, {height}x{width}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'batch':>5} {'fp32 img/s':>11} {'int8 img/s':>11} {'speed-up':>9}")
    for row in rows:
        print(f"{row['batch']:>5} {row['fp32_images_per_second']:>11.1f} {row['int8_images_per_second']:>11.1f} "
              f"{row['speedup']:>8.2f}x")
    write_results(results, args.output)


if __name__ == "__main__":
    main()
