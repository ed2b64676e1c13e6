"""benchmarks/gpu_check.sh in its CI-safe CPU mode (small sizes): it exports and checks parity,
runs the deploy predictor and the CPU backends, writes its JSON and says what needs a GPU; and the
GPU peak table answers by device name."""
import argparse
import importlib
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO

TINY_Q2L = ["-o", "Arch.backbone.arch=resnet18", "-o", "Arch.hidden_dim=512", "-o", "Arch.dim_feedforward=512"]


@pytest.mark.slow
def test_cpu_mode_runs_its_checks_and_says_what_needs_a_gpu(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for index in range(3):
        noise = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
        assert cv2.imwrite(str(photos / f"photo{index}.jpg"), cv2.GaussianBlur(noise, (9, 9), 3))
    output = tmp_path / "results" / "gpu_check.json"
    result = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu-only", "--configs", "q2l_r101_448",
         "--size", "64", *TINY_Q2L, "--compile", "off", "--batches", "1", "2", "--repeats", "1",
         "--photos", str(photos), "--photo_repeats", "1", "--output", str(output)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr[-4000:]
    assert "needs a GPU" in result.stderr
    report = json.loads(output.read_text())
    assert report["mode"] == "cpu-only" and report["why_cpu_only"] == "--cpu-only"
    assert "the deploy predictor on the CUDA provider" in report["needs_gpu"]
    assert report["failures"] == []
    sections = report["sections"]
    export = sections["export q2l_r101_448"]
    assert set(export) == {"fp32", "seconds"}  # float16 export needs a GPU
    assert set(export["fp32"]["max_abs_diff_vs_torch"]) == {"1x3x64x64", "4x3x64x64"}
    assert max(export["fp32"]["max_abs_diff_vs_torch"].values()) <= 1e-4
    deploy = sections["deploy predictor"]
    assert deploy["providers"] == "CPUExecutionProvider" and deploy["torch_imported"] is False
    assert deploy["files"] == 3 and deploy["error_records"] == {} and deploy["images_per_second"] > 0
    assert deploy["num_workers"] == min(8, os.cpu_count() or 1)
    if "CUDAExecutionProvider" in report["onnxruntime_providers"]:
        # onnxruntime-gpu as requirements.txt installs it: every library its CUDA provider needs
        # loads without torch once preloaded; only the driver (libcuda, absent without a GPU) may not
        libraries = deploy["cuda_libraries"]
        assert set(libraries["missing"]) <= {"libcuda.so.1"}, libraries
        assert "libcublasLt.so.13" in libraries["found"] and "libcudnn.so.9" in libraries["found"]
    speed = sections["speed q2l_r101_448"]
    assert speed["input"] == [64, 64] and speed["model_gflop_per_image"] > 0
    rows = {(row["backend"], row["batch"]): row for row in speed["rows"]}
    assert set(rows) == {(backend, batch) for backend in ("torch eager fp32 (cpu)", "onnxruntime CPU fp32")
                         for batch in (1, 2)}
    assert all(row["images_per_second"] > 0 and "fraction_of_fp16_peak" not in row for row in rows.values())
    assert "training step" not in sections


def test_peak_table_by_device_name(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    gpu_check = importlib.import_module("gpu_check")
    assert gpu_check.peak_fp16("NVIDIA H200")[0] == 989.4
    assert gpu_check.peak_fp16("NVIDIA H200 NVL")[0] == 835.0
    assert gpu_check.peak_fp16("NVIDIA H100 80GB HBM3")[0] == 989.4
    assert gpu_check.peak_fp16("NVIDIA H100 PCIe")[0] == 756.0
    assert gpu_check.peak_fp16("NVIDIA A100-SXM4-80GB")[0] == 312.0
    peak, note = gpu_check.peak_fp16("Tesla T4")
    assert peak is None and "unknown GPU 'Tesla T4'" in note


def test_a_crashing_export_fails_its_precision_not_the_check(tmp_path, monkeypatch):
    """Each export runs in a child process: a native crash (as a segmentation fault inside
    onnxruntime was, on a GPU host) is one failed precision naming its signal, and the check goes on."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    gpu_check = importlib.import_module("gpu_check")
    crashing = tmp_path / "python"
    crashing.write_text("#!/bin/sh\necho 'Fatal Python error: Segmentation fault' >&2\nkill -SEGV $$\n")
    crashing.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(crashing))
    args = argparse.Namespace(size=64, override=TINY_Q2L[1::2])
    result = gpu_check.export_section("q2l_r101_448", args, tmp_path, gpu=False)
    assert (tmp_path / "weights.pth").is_file()  # made in this process, before the child
    assert result["fp32"]["error"].startswith("the fp32 export process ended with signal SIGSEGV")
    assert "Segmentation fault" in result["fp32"]["error"]
    assert result["error"].startswith("fp32 export: ")


@pytest.mark.slow
def test_settled_random_weights_fit_float16(monkeypatch):
    """The GPU check's random ResNet-101 Query2Label overflows float16 as initialised (its float16
    export was refused on an H200); with the normalisation statistics settled it stays in range."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    gpu_check = importlib.import_module("gpu_check")
    import torch

    from ppq2l.arch import build_model
    from ppq2l.config import get_config

    config = get_config(REPO / gpu_check.ZOO["q2l_r101_448"], ["Arch.backbone.pretrained=False"])
    torch.manual_seed(0)
    model = build_model(config["Arch"]).eval()
    images = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))

    def largest_feature() -> float:
        with torch.no_grad():
            return model.backbone(images).abs().max().item()

    assert largest_feature() > 65504  # as initialised: beyond float16
    gpu_check.settle_normalisation(model, [128, 128])
    assert largest_feature() < 1000
    with torch.no_grad():
        assert torch.isfinite(model.half()(images.half())).all()
