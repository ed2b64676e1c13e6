"""One GPU check: exports the zoo's Query2Label R101-448 and ML-Decoder TResNet-L-448 (random
weights) in float32 and float16 with the exporter's parity checks, times torch eager and
torch.compile against onnxruntime CUDA and TensorRT fp16 at batch 1 and 32 (images/s and the
fraction of the GPU's dense fp16 tensor peak), runs the deploy predictor end to end on the GPU over
photos (failing loudly when onnxruntime fell back to the CPU, with the reason), and times the
training step in fp16 with and without torch.compile against the fp16 reference. Writes JSON to
benchmarks/results/gpu_check.json (after every section, so a run cut short keeps its figures).

    bash benchmarks/gpu_check.sh [--cpu-only] [--configs q2l_r101_448 ...] [-o Key=value] [--size S]
Without a CUDA device (or with --cpu-only) it runs the CPU side only: fp32 export and parity,
torch and onnxruntime on the CPU, the deploy predictor on the CPU and whether the CUDA provider's
libraries would load; the JSON lists under `needs_gpu` what was not run. Exit status 1 when a
section failed (the deploy predictor not on CUDA in a GPU run is one)."""
from __future__ import annotations

import argparse
import copy
import ctypes
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from ppq2l.arch import build_model
from ppq2l.config import get_config
from ppq2l.engine.checkpoint import save_checkpoint
from ppq2l.export.onnx_export import INPUT_NAME, OUTPUT_NAME, SigmoidScores, export_from_config
from ppq2l.utils.atomic_write import write_text_atomic
from ppq2l.utils.model_info import FLOPS_PER_MAC, forward_gmacs

from bench_common import median_seconds

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ZOO = {"q2l_r101_448": "configs/MultiLabelCOCO/Query2Label/Q2L_R101_448.yaml",
       "mldecoder_tresnetl_448": "configs/MultiLabelCOCO/MLDecoder/ML_TResNetL_448.yaml"}
# Dense (no sparsity) fp16 tensor-core TFLOP/s from NVIDIA's data sheets; the first name that the
# device name contains wins, so the specific variants come before the family.
PEAK_FP16_TFLOPS = (("H200 NVL", 835.0), ("H200", 989.4), ("H100 NVL", 835.0), ("H100 PCIe", 756.0),
                    ("H100", 989.4), ("A100", 312.0))
NEEDS_GPU = ["float16 export and its parity check", "torch eager fp16 and torch.compile on CUDA",
             "onnxruntime CUDA (fp32, fp16 model) and TensorRT fp16", "fraction of the GPU's dense fp16 peak",
             "the deploy predictor on the CUDA provider", "the training step in fp16 with and without compile"]
TENSORRT_LIBRARY = "libnvinfer.so.10"  # what onnxruntime-gpu 1.31's TensorRT provider links
CHILD_PREFIX = "gpu_check export: "  # how the export child marks its result line on stdout
PHOTO_FOLDERS = ("shared/testdata", "../shared/testdata", "../../shared/testdata")


def peak_fp16(device_name: str | None) -> tuple[float | None, str]:
    """The dense fp16 peak TFLOP/s of a GPU by name, and where it comes from (or why none)."""
    if device_name is None:
        return None, "no CUDA device: no GPU peak"
    for pattern, tflops in PEAK_FP16_TFLOPS:
        if pattern in device_name:
            return tflops, f"{pattern}: {tflops} TFLOP/s dense fp16 tensor (NVIDIA data sheet)"
    return None, f"unknown GPU {device_name!r}: its fp16 peak is not in the table, fractions are not given"


class Report:
    """The results document, written after every section; sections time themselves, and one that
    raises is recorded as failed with its error instead of stopping the check."""

    def __init__(self, path: Path, budget_s: float, document: dict) -> None:
        self.path, self.budget_s, self.started = path, budget_s, time.monotonic()
        self.document = {**document, "sections": {}, "failures": []}

    def run(self, name: str, function, *args) -> dict | None:
        elapsed = time.monotonic() - self.started
        if elapsed > self.budget_s:
            self.document["sections"][name] = {"skipped": f"time budget of {self.budget_s:.0f} s used up"}
            self.save()
            return None
        print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        try:
            result = function(*args)
        except Exception as error:  # a failed section is reported and the next one still runs
            result = {"error": f"{type(error).__name__}: {error}",
                      "traceback": traceback.format_exc().splitlines()[-6:]}
        result["seconds"] = round(time.monotonic() - began, 1)
        self.document["sections"][name] = result
        if "error" in result:
            self.document["failures"].append(f"{name}: {result['error']}")
        self.save()
        return result

    def save(self) -> None:
        self.document["elapsed_s"] = round(time.monotonic() - self.started, 1)
        write_text_atomic(self.path, json.dumps(self.document, indent=2) + "\n")


# ----------------------------------------------------------------------------------- export
def load_config(name: str, args: argparse.Namespace, extra: list[str] = ()) -> dict:
    """A zoo config (or a path) with random backbone weights, --size and the -o overrides."""
    size = [f"Global.image_shape=[3,{args.size},{args.size}]",
            f"DataLoader.Eval.dataset.transform_ops.ResizeImage.size={args.size}"] if args.size else []
    return get_config(REPO / ZOO.get(name, name), ["Arch.backbone.pretrained=False", *size,
                                                  *args.override, *extra])


def export_overrides(work: Path, precision: str, gpu: bool) -> list[str]:
    return [f"Global.output_dir={work / 'run'}", f"Global.save_inference_dir={work / precision}",
            f"Global.pretrained_model={work / 'weights.pth'}", f"Global.device={'cuda' if gpu else 'cpu'}",
            f"Global.export_fp16={precision == 'fp16'}"]


def settle_normalisation(model: torch.nn.Module, size: list[int]) -> None:
    """Random weights brought to a trained network's scale: each batch-norm layer's running
    statistics are set, in one forward pass over random images, to those of the input it
    receives, so every layer's output is near unit scale. Left as initialised (mean 0, variance 1),
    the residual stream of the random ResNet-101 reaches about 2.4e5 in layer4, beyond float16's
    65504, and the exporter rightly refuses its float16 export as an overflow."""
    from torchvision.ops import FrozenBatchNorm2d

    def set_statistics(module: torch.nn.Module, inputs: tuple) -> None:
        channels = inputs[0].detach().float().transpose(0, 1).flatten(1)
        module.running_mean.copy_(channels.mean(1))
        module.running_var.copy_(channels.var(1))

    norms = [module for module in model.modules()
             if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d))]
    hooks = [module.register_forward_pre_hook(set_statistics) for module in norms]
    try:
        with torch.no_grad():
            model.eval()(torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0)))
    finally:
        for hook in hooks:
            hook.remove()


def export_section(name: str, args: argparse.Namespace, work: Path, gpu: bool) -> dict:
    """Random weights saved as a checkpoint, exported with the exporter (its own parity check),
    each precision in a child process: a crash in native code (an onnxruntime or exporter
    segmentation fault) fails this precision with its signal instead of ending the whole check."""
    config = load_config(name, args, export_overrides(work, "fp32", gpu))
    torch.manual_seed(0)
    model = build_model(config["Arch"])
    settle_normalisation(model, config["Global"]["image_shape"][1:])
    save_checkpoint({"model": model.state_dict()}, work / "weights.pth")
    result = {}
    for precision in ("fp32", "fp16") if gpu else ("fp32",):
        command = [sys.executable, "-X", "faulthandler", str(Path(__file__).resolve()),
                   "--export_child", name, precision, str(work), *(["--cpu-only"] if not gpu else []),
                   *(["--size", str(args.size)] if args.size else []),
                   *(option for override in args.override for option in ("-o", override))]
        began = time.monotonic()
        child = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        lines = [line[len(CHILD_PREFIX):] for line in child.stdout.splitlines() if line.startswith(CHILD_PREFIX)]
        if child.returncode == 0 and lines:
            result[precision] = {**json.loads(lines[-1]), "seconds": round(time.monotonic() - began, 1)}
            continue
        ended = (f"signal {signal.Signals(-child.returncode).name}" if child.returncode < 0
                 else f"exit status {child.returncode}")
        result[precision] = {"error": f"the {precision} export process ended with {ended}: "
                                      f"{child.stderr.strip()[-900:]}"}
    failed = [precision for precision, outcome in result.items() if "error" in outcome]
    if failed:
        result["error"] = "; ".join(f"{precision} export: {result[precision]['error']}" for precision in failed)
    return result


def export_child(name: str, precision: str, work: Path, args: argparse.Namespace, gpu: bool) -> dict:
    """One export, in the child process export_section starts: the parity figures and the file."""
    summary = export_from_config(load_config(name, args, export_overrides(work, precision, gpu)))
    return {"max_abs_diff_vs_torch": summary["max_abs_diff"], "onnx": summary["onnx"]}


# ------------------------------------------------------------------------------------ speed
def torch_runner(model: torch.nn.Module, device: torch.device, dtype: torch.dtype):
    """Scores a float32 numpy batch: copied to the device in `dtype`, run, synchronised."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run(images: np.ndarray) -> None:
        with torch.inference_mode():
            model(torch.from_numpy(images).to(device, dtype))
        sync()

    return run


def fail(reason: str):
    """A runner builder's way of saying why it cannot run."""
    raise RuntimeError(reason)


def session_runner(path: str, providers: list, wanted: str, half: bool):
    """Scores a float32 numpy batch with onnxruntime; raises when `wanted` is not what runs."""
    session = onnxruntime.InferenceSession(path, providers=providers)
    if session.get_providers()[0] != wanted:
        reason = ""
        if wanted == "TensorrtExecutionProvider":  # onnxruntime only logs why; the usual cause:
            try:
                ctypes.CDLL(TENSORRT_LIBRARY)
            except OSError as error:
                reason = f" ({error}: TensorRT is not installed; it is not in requirements.txt)"
        raise RuntimeError(f"onnxruntime runs on {session.get_providers()}, not {wanted}{reason}")

    def run(images: np.ndarray) -> None:
        session.run([OUTPUT_NAME], {INPUT_NAME: images.astype(np.float16) if half else images})

    return run


def runners(model: torch.nn.Module, size: list[int], exported: dict, args: argparse.Namespace,
            gpu: bool) -> dict:
    """Backend name -> a function that starts its runner, for this run's device."""
    device = torch.device("cuda" if gpu else "cpu")
    fp32 = exported["fp32"]["onnx"]
    table = {f"torch eager fp32 ({device.type})": lambda: torch_runner(model.to(device), device, torch.float32)}
    if not gpu:
        table["onnxruntime CPU fp32"] = lambda: session_runner(fp32, ["CPUExecutionProvider"],
                                                               "CPUExecutionProvider", False)
        if args.compile == "on":
            table["torch.compile fp32 (cpu)"] = lambda: torch_runner(torch.compile(model), device, torch.float32)
        return table
    half = copy.deepcopy(model).to(device).half()  # .to and .half change a module in place
    fp16 = exported.get("fp16", {}).get("onnx")
    shapes = {key: f"images:{batch}x3x{size[0]}x{size[1]}" for key, batch in
              (("min", min(args.batches)), ("opt", max(args.batches)), ("max", max(args.batches)))}
    trt = ("TensorrtExecutionProvider", {"trt_fp16_enable": True, "trt_profile_min_shapes": shapes["min"],
                                         "trt_profile_opt_shapes": shapes["opt"],
                                         "trt_profile_max_shapes": shapes["max"]})
    table.update({
        "torch eager fp16 (cuda)": lambda: torch_runner(half, device, torch.float16),
        "onnxruntime CUDA fp32": lambda: session_runner(fp32, ["CUDAExecutionProvider"], "CUDAExecutionProvider",
                                                        False),
        "onnxruntime CUDA fp16 model": lambda: session_runner(fp16, ["CUDAExecutionProvider"],
                                                              "CUDAExecutionProvider", True)
        if fp16 else fail("the float16 export failed, see the export section"),
        "onnxruntime TensorRT fp16": lambda: session_runner(fp32, [trt, "CUDAExecutionProvider"],
                                                            "TensorrtExecutionProvider", False),
    })
    if args.compile == "on":
        table["torch.compile fp16 (cuda)"] = lambda: torch_runner(torch.compile(half), device, torch.float16)
    return table


def speed_section(name: str, exported: dict | None, args: argparse.Namespace, gpu: bool,
                  peak: float | None) -> dict:
    """images/s of every backend at every batch size, and the fraction of the fp16 peak."""
    if not exported or "onnx" not in exported.get("fp32", {}):
        raise RuntimeError("the float32 export of this config failed, see its export section")
    config = load_config(name, args)
    height, width = config["Global"]["image_shape"][1:]
    model = SigmoidScores(build_model(config["Arch"])).eval()
    gflop = forward_gmacs(model.model, (3, height, width)) * FLOPS_PER_MAC
    table = runners(model, [height, width], exported, args, gpu)
    rng = np.random.default_rng(0)
    rows = []
    for backend, build in table.items():
        try:
            run = build()
        except Exception as error:  # a backend that cannot start here is reported, not fatal
            rows.append({"backend": backend, "unavailable": f"{type(error).__name__}: {str(error)[:300]}"})
            continue
        for batch in args.batches:
            images = rng.standard_normal((batch, 3, height, width)).astype(np.float32)
            row = {"backend": backend, "batch": batch}
            try:
                seconds = median_seconds(functools.partial(run, images), args.repeats, warmup=3)
            except Exception as error:  # e.g. out of memory at this batch
                row["unavailable"] = f"{type(error).__name__}: {str(error)[:300]}"
            else:
                row.update({"ms": seconds * 1e3, "images_per_second": batch / seconds})
                if peak is not None:
                    row["fraction_of_fp16_peak"] = gflop * batch / seconds / (peak * 1e3)
            rows.append(row)
        print(f"[gpu_check]   {backend}: " + ", ".join(
            f"b{row['batch']} {row['images_per_second']:.1f} img/s" if "images_per_second" in row
            else f"unavailable ({row['unavailable'][:80]})" for row in rows if row["backend"] == backend),
            file=sys.stderr, flush=True)
    return {"input": [height, width], "model_gflop_per_image": gflop, "rows": rows}


# ------------------------------------------------------------------------ deploy and training
def find_photos(given: str | None, work: Path) -> tuple[Path, str]:
    """The photo folder: --photos, the project's shared test photos, else generated photo-like JPEGs."""
    if given:
        return Path(given), "given"
    for candidate in PHOTO_FOLDERS:
        if (REPO / candidate).is_dir():
            return (REPO / candidate).resolve(), "shared test photos"
    import cv2

    folder = work / "photos"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(8):
        noise = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"photo{index}.jpg"), cv2.GaussianBlur(noise, (9, 9), 3))
    return folder, "generated (no shared test photos found)"


def deploy_section(exported: dict | None, args: argparse.Namespace, gpu: bool, work: Path) -> dict:
    """The deploy predictor in a torch-free process over the photos; on a GPU it must run on CUDA."""
    if not exported or "onnx" not in exported.get("fp32", {}):
        raise RuntimeError("the float32 export failed, see the export section")
    photos, origin = find_photos(args.photos, work)
    model_dir = str(Path(exported["fp32"]["onnx"]).parent)
    command = [sys.executable, str(HERE / "gpu_deploy_check.py"), model_dir, str(photos),
               "--batch_size", str(max(args.batches)), "--repeats", str(args.photo_repeats),
               "--num_workers", str(min(8, os.cpu_count() or 1))]  # decoding photos bounds it otherwise
    result = subprocess.run(command + (["--use_gpu"] if gpu else []), capture_output=True, text=True,
                            cwd=REPO)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the deploy check printed nothing: {result.stderr.strip()[-800:]}")
    outcome = {**json.loads(lines[-1]), "photos": str(photos), "photos_origin": origin}
    if gpu and not outcome["on_cuda"]:  # an "error" marks the section failed and keeps its figures
        libraries = outcome.get("cuda_libraries", {})
        outcome["error"] = (f"the deploy predictor fell back to the CPU ({outcome['providers']}): "
                            f"warnings {outcome['warnings']}; CUDA libraries missing "
                            f"{libraries.get('missing')}; CUDA provider library: "
                            f"{libraries.get('cuda_provider_library')}")
    elif outcome["error_records"]:
        outcome["error"] = f"photos without a prediction: {outcome['error_records']}"
    return outcome


def train_section(args: argparse.Namespace, work: Path) -> dict:
    """benchmarks/bench_train.py on the Q2L R101-448 config: the fp16 reference, ours in fp16
    with and without torch.compile (each variant in its own process)."""
    output = work / "train.json"
    command = [sys.executable, str(HERE / "bench_train.py"), "-c", str(REPO / ZOO["q2l_r101_448"]),
               "-o", "Arch.backbone.pretrained=False", "--batch", str(args.train_batch), "--steps", "10",
               "--dtype", "fp16", "--compile", "off", "on", "--channels-last", "on", "--output", str(output)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0 or not output.is_file():
        raise RuntimeError(f"bench_train.py failed: {result.stderr.strip()[-800:]}")
    return {"command": " ".join(command[1:]), "rows": json.loads(output.read_text())["rows"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-only", action="store_true", help="the CI-safe CPU part, even with a GPU")
    parser.add_argument("--configs", nargs="+", default=list(ZOO), help=f"{', '.join(ZOO)} or config paths")
    parser.add_argument("-o", "--override", action="append", default=[], help="applied to every config")
    parser.add_argument("--size", type=int, default=None, help="input side (default: the config's)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compile", choices=["on", "off"], default="on")
    parser.add_argument("--photos", default=None, help="photo folder for the deploy predictor")
    parser.add_argument("--photo_repeats", type=int, default=8)
    parser.add_argument("--train_batch", type=int, default=32)
    parser.add_argument("--budget_s", type=float, default=420.0, help="sections after this are skipped")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "gpu_check.json"))
    parser.add_argument("--export_child", nargs=3, metavar=("CONFIG", "PRECISION", "WORK"),
                        help=argparse.SUPPRESS)  # one export in a child process (export_section)
    args = parser.parse_args()
    if args.export_child:
        name, precision, work = args.export_child
        gpu = torch.cuda.is_available() and not args.cpu_only
        print(CHILD_PREFIX + json.dumps(export_child(name, precision, Path(work), args, gpu)), flush=True)
        return 0

    gpu = torch.cuda.is_available() and not args.cpu_only
    device_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    peak, peak_note = peak_fp16(device_name if gpu else None)
    report = Report(Path(args.output), args.budget_s, {
        "mode": "gpu" if gpu else "cpu-only",
        "why_cpu_only": None if gpu else ("--cpu-only" if args.cpu_only else "torch sees no CUDA device"),
        "needs_gpu": [] if gpu else NEEDS_GPU, "device": device_name, "fp16_peak_tflops": peak,
        "fp16_peak_note": peak_note, "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                                                  "cuda": torch.version.cuda},
        "onnxruntime_providers": onnxruntime.get_available_providers(), "arguments": vars(args)})
    with tempfile.TemporaryDirectory(prefix="gpu_check") as folder:
        work = Path(folder)
        exports = {}
        for name in args.configs:
            (work / name).mkdir()
            exports[name] = report.run(f"export {name}", export_section, name, args, work / name, gpu)
        report.run("deploy predictor", deploy_section, exports[args.configs[0]], args, gpu, work)
        for name in args.configs:
            report.run(f"speed {name}", speed_section, name, exports[name], args, gpu, peak)
        if gpu:
            report.run("training step", train_section, args, work)
    report.save()
    print(json.dumps(report.document))
    for failure in report.document["failures"]:
        print(f"FAILED {failure}", file=sys.stderr)
    if not gpu:
        print(f"[gpu_check] CPU part only ({report.document['why_cpu_only']}); needs a GPU: "
              f"{'; '.join(NEEDS_GPU)}", file=sys.stderr)
    return 1 if report.document["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
