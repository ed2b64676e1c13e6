"""Inference speed: torch eager vs torch.compile vs the exported ONNX model under onnxruntime (CPU;
CUDA and TensorRT fp16 providers when a GPU has them), on the same model and inputs: batch-1
latency and batch-16/64 throughput, and the achieved model GFLOP/s (FLOPs from
ppq2l.utils.model_info, 2 per multiply-add) as a fraction of this machine's measured float32
matrix-product GFLOP/s (the faster of torch's and, on CPU, onnxruntime's). Prints a table and a
JSON line.

    python benchmarks/bench_infer.py [-c configs/quick_start/Q2L_demo_shapes.yaml] [-o Key=value ...]
        [--weights CKPT] [--threads 2] [--repeats 20] [--batches 1 16 64]
Without --weights the model keeps its random initial weights (speed does not depend on them).
A backend that cannot run here (torch.compile without a working C compiler, a provider that
onnxruntime lacks) is reported as unavailable with the reason.

The `+ maps` rows ask for per-label maps as well (torch: ppq2l.explain.maps, the ONNX model
exported with Global.export_attention=True, both outputs fetched); the lines under the table
give their cost over the plain rows, which are the plain forward and graph, in wall time and in
this process's CPU time (the steadier figure on a machine shared with other work).
"""
from __future__ import annotations

import argparse
import functools
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from ppq2l.arch import build_model
from ppq2l.config import get_config
from ppq2l.engine.checkpoint import load_model_weights
from ppq2l.explain.maps import ScoresAndMaps
from ppq2l.export.metadata import MODEL_FILE
from ppq2l.export.onnx_export import ATTENTION_NAME, SigmoidScores, check_parity, export_onnx
from ppq2l.utils.model_info import FLOPS_PER_MAC, forward_gmacs

from bench_common import fastest_seconds, median_seconds, time_once, write_results


def matmul_gflops(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """float32 matrix-product speed of torch on `device`: a size x size x size torch.matmul."""
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run():
        torch.matmul(a, b)
        sync()

    return 2 * size ** 3 / fastest_seconds(run, repeats) / 1e9


def onnxruntime_matmul_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """The same product through onnxruntime's CPU MatMul. Its kernels may use wider vector units
    than torch's BLAS on the same processor (AVX-512 on recent AMD CPUs), so the faster of the two
    is taken as the machine's matmul speed."""
    inputs = [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [size, size])
              for name in ("a", "b")]
    output = onnx.helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [size, size])
    graph = onnx.helper.make_graph([onnx.helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                                   inputs, [output])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)],
                                   ir_version=8)  # old enough for any onnxruntime that has opset 17
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal((size, size), dtype=np.float32) for name in ("a", "b")}

    def run():
        session.run(["c"], feeds)

    return 2 * size ** 3 / fastest_seconds(run, repeats) / 1e9


def torch_runner(model: torch.nn.Module, device: torch.device, channels_last: bool):
    """A function that scores a float32 numpy batch with `model` on `device`, in the config's
    memory layout."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    layout = torch.channels_last if channels_last else torch.contiguous_format

    def run(images: np.ndarray) -> None:
        with torch.inference_mode():
            model(torch.from_numpy(images).to(device, memory_format=layout))
        sync()

    return run


def run_session(session, outputs: list[str], images: np.ndarray) -> list[np.ndarray]:
    """The `outputs` of one batch from an onnxruntime session of an exported model."""
    return session.run(outputs, {"images": images})


def onnx_runners(path: Path, threads: int, outputs: tuple[str, ...] = ("scores",),
                 suffix: str = "") -> dict:
    """Name -> runner, or name -> reason, for each onnxruntime provider worth timing here; the
    runners fetch `outputs` and their names end in `suffix`."""
    available = onnxruntime.get_available_providers()
    wanted = {"onnxruntime CPU": ["CPUExecutionProvider"]}
    if torch.cuda.is_available():
        wanted["onnxruntime CUDA"] = ["CUDAExecutionProvider"]
        wanted["onnxruntime TensorRT fp16"] = [("TensorrtExecutionProvider", {"trt_fp16_enable": True}),
                                               "CUDAExecutionProvider"]
    runners = {}
    for name, providers in wanted.items():
        name += suffix
        first = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if first not in available:
            runners[name] = f"{first} is not in this onnxruntime ({', '.join(available)})"
            continue
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # a provider that fails to initialise is reported, not fatal
            runners[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            continue
        runners[name] = functools.partial(run_session, session, list(outputs))
    return runners


def compiled_runner(model: torch.nn.Module, device: torch.device, channels_last: bool,
                    sample: np.ndarray):
    """torch.compile of `model` (compiled on `sample`), or the reason it cannot run here."""
    try:
        compiled = torch.compile(model)
        run = torch_runner(compiled, device, channels_last)
        run(sample)
        return run
    except Exception as error:  # e.g. no C compiler for the CPU backend
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"


def paired_extra(plain, with_maps, images: np.ndarray, repeats: int) -> dict[str, float]:
    """The extra time of `with_maps` over `plain` on `images`, as the ratio of their medians - 1:
    `wall` (what a caller waits) and `cpu` (this process's CPU time, all threads: on a shared
    machine it moves less with the other load than the wall time does). The two are timed in
    alternation, so a change of load hits both alike."""
    for _ in range(3):
        plain(images)
        with_maps(images)
    times: dict[str, dict[str, list[float]]] = {"wall": {"plain": [], "maps": []},
                                                "cpu": {"plain": [], "maps": []}}
    for _ in range(repeats):
        for key, runner in (("plain", plain), ("maps", with_maps)):
            cpu_start = time.process_time()
            times["wall"][key].append(time_once(functools.partial(runner, images)))
            times["cpu"][key].append(time.process_time() - cpu_start)
    return {clock: statistics.median(pair["maps"]) / statistics.median(pair["plain"]) - 1.0
            for clock, pair in times.items()}


def maps_cost(runners: dict, batches: list[int], height: int, width: int, repeats: int,
              rng: np.random.Generator) -> dict[int, dict[str, dict[str, float]]]:
    """Per batch, the extra wall and CPU time of every `+ maps` runner over its plain twin."""
    costs: dict[int, dict[str, dict[str, float]]] = {}
    for batch in batches:
        images = rng.standard_normal((batch, 3, height, width)).astype(np.float32)
        for name, runner in runners.items():
            plain_name = name.removesuffix(" + maps")
            plain = runners.get(plain_name)
            if name != plain_name and callable(runner) and callable(plain):
                costs.setdefault(batch, {})[plain_name] = paired_extra(plain, runner, images, repeats)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default="configs/quick_start/Q2L_demo_shapes.yaml")
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--compile", choices=["on", "off"], default="on")
    parser.add_argument("--output", default="benchmarks/results/bench_infer.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = get_config(args.config, args.override)
    model = build_model(config["Arch"])
    if args.weights:
        load_model_weights(model, args.weights)
    scored = SigmoidScores(model).eval()
    height, width = config["Global"]["image_shape"][1:]
    gflop_per_image = forward_gmacs(model, (3, height, width)) * FLOPS_PER_MAC
    matmul = {"torch": matmul_gflops(device)}
    if device.type == "cpu":
        matmul["onnxruntime"] = onnxruntime_matmul_gflops(args.threads)
    peak = max(matmul.values())
    rng = np.random.default_rng(0)
    results = {"config": args.config, "input": [height, width], "threads": args.threads,
               "device": device.type, "channels_last": bool(config["Global"].get("channels_last")),
               "model_gflop_per_image": gflop_per_image,
               "matmul_fp32_gflops": peak, "matmul_fp32_gflops_by_library": matmul, "rows": [],
               "machine": {"processor": platform.processor() or platform.machine(),
                           "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                           "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None}}
    with tempfile.TemporaryDirectory() as folder:
        path, maps_path = Path(folder) / MODEL_FILE, Path(folder) / "model_maps.onnx"
        export_onnx(scored, path, (height, width))
        check_parity(scored, path, (height, width))
        with_maps = ScoresAndMaps(model).eval()
        export_onnx(with_maps, maps_path, (height, width), attention=True)
        check_parity(with_maps, maps_path, (height, width))
        channels_last = bool(config["Global"].get("channels_last"))
        layout = torch.channels_last if channels_last else torch.contiguous_format
        on_device = scored.to(device, memory_format=layout)
        runners = {f"torch eager ({device.type})": torch_runner(on_device, device, channels_last),
                   f"torch eager ({device.type}) + maps": torch_runner(
                       with_maps.to(device, memory_format=layout), device, channels_last)}
        if args.compile == "on":
            sample = rng.standard_normal((1, 3, height, width)).astype(np.float32)
            runners[f"torch.compile ({device.type})"] = compiled_runner(on_device, device,
                                                                        channels_last, sample)
        runners.update(onnx_runners(path, args.threads))
        runners.update(onnx_runners(maps_path, args.threads, ("scores", ATTENTION_NAME), " + maps"))
        for batch in args.batches:
            images = rng.standard_normal((batch, 3, height, width)).astype(np.float32)
            for name, runner in runners.items():
                row = {"backend": name, "batch": batch}
                if isinstance(runner, str):
                    row["unavailable"] = runner
                else:
                    try:
                        seconds = median_seconds(functools.partial(runner, images), args.repeats,
                                                 warmup=3)
                    except Exception as error:  # e.g. a compiled graph that cannot take this batch
                        row["unavailable"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                    else:
                        achieved = gflop_per_image * batch / seconds
                        row.update({"ms": seconds * 1e3, "images_per_second": batch / seconds,
                                    "gflops": achieved, "fraction_of_matmul": achieved / peak})
                results["rows"].append(row)
        results["maps_cost"] = maps_cost(runners, args.batches, height, width, args.repeats, rng)
    by_library = ", ".join(f"{name} {value:.0f}" for name, value in matmul.items())
    print(f"model {gflop_per_image:.3f} GFLOP/image at {height}x{width}; fp32 matmul on this "
          f"{device.type}: {peak:.0f} GFLOP/s, the fastest of {by_library} ({args.threads} threads on CPU)")
    print(f"{'backend':<28} {'batch':>5} {'ms':>9} {'img/s':>9} {'GFLOP/s':>9} {'of matmul':>9}")
    for row in results["rows"]:
        if "unavailable" in row:
            print(f"{row['backend']:<28} {row['batch']:>5} unavailable: {row['unavailable']}")
            continue
        print(f"{row['backend']:<28} {row['batch']:>5} {row['ms']:>9.2f} {row['images_per_second']:>9.1f} "
              f"{row['gflops']:>9.1f} {row['fraction_of_matmul']:>8.1%}")
    for batch, costs in results["maps_cost"].items():
        print(f"per-label maps at batch {batch}: " + ", ".join(
            f"{name} {extra['wall']:+.1%} wall / {extra['cpu']:+.1%} CPU time" for name, extra in costs.items())
            + " over the same backend without them (medians, timed in alternation)")
    write_results(results, args.output)


if __name__ == "__main__":
    main()
