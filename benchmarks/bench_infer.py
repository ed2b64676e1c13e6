"""Inference speed: torch eager vs the exported ONNX model under onnxruntime, on the same model
and inputs, batch-1 latency and batch-16 throughput. Prints a table and a JSON line.

    python benchmarks/bench_infer.py -c configs/quick_start/Q2L_demo_shapes.yaml [-o Key=value ...]
        [--weights CKPT] [--threads 2] [--repeats 30]
Without --weights the model keeps its random initial weights (speed does not depend on them).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import torch  # noqa: E402

from ppq2l.arch import build_model  # noqa: E402
from ppq2l.config import get_config  # noqa: E402
from ppq2l.engine.checkpoint import load_model_weights  # noqa: E402
from ppq2l.export.onnx_export import SigmoidScores, check_parity, export_onnx  # noqa: E402


def median_seconds(run, repeats: int, warmup: int = 3) -> float:
    """Median wall time of `run()` after a few warm-up calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--output", default="benchmarks/results/bench_infer.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = get_config(args.config, args.override)
    model = build_model(config["Arch"])
    if args.weights:
        load_model_weights(model, args.weights)
    scored = SigmoidScores(model).eval()
    height, width = config["Global"]["image_shape"][1:]
    rng = np.random.default_rng(0)
    results = {"config": args.config, "input": [height, width], "threads": args.threads,
               "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                          f"onnxruntime {onnxruntime.__version__}"}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(scored, path, (height, width))
        check_parity(scored, path, (height, width))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for batch in (1, 16):
            images = rng.standard_normal((batch, 3, height, width)).astype(np.float32)
            tensor = torch.from_numpy(images)

            def run_torch():
                with torch.inference_mode():
                    scored(tensor)

            def run_onnx():
                session.run(["scores"], {"images": images})

            torch_s = median_seconds(run_torch, args.repeats)
            onnx_s = median_seconds(run_onnx, args.repeats)
            results[f"batch{batch}"] = {"torch_ms": torch_s * 1e3, "onnx_ms": onnx_s * 1e3,
                                        "torch_img_s": batch / torch_s, "onnx_img_s": batch / onnx_s,
                                        "onnx_speedup": torch_s / onnx_s}
    print(f"{'batch':>5} {'torch eager ms':>15} {'onnxruntime ms':>15} {'torch img/s':>12} "
          f"{'onnx img/s':>11} {'speed-up':>9}")
    for batch in (1, 16):
        row = results[f"batch{batch}"]
        print(f"{batch:>5} {row['torch_ms']:>15.2f} {row['onnx_ms']:>15.2f} {row['torch_img_s']:>12.1f} "
              f"{row['onnx_img_s']:>11.1f} {row['onnx_speedup']:>8.2f}x")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
