"""The deploy predictor end to end over a folder of photos, in a process without torch (as on a
deploy machine), for benchmarks/gpu_check.py: prints one JSON line with the providers the session
really runs on, the records' outcome, images/s, and what the CUDA libraries look like from here.

    python benchmarks/gpu_deploy_check.py MODEL_DIR PHOTOS_DIR [--use_gpu] [--batch_size 32] [--repeats 4]
        [--num_workers 2]
With --use_gpu the exit status is 1 when onnxruntime did not actually run on CUDA."""
from __future__ import annotations

import sys

sys.modules["torch"] = None  # type: ignore[assignment]  # any import of torch now fails: deploy is torch-free

import argparse  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import onnxruntime  # noqa: E402

from ppq2l.data.image_files import collect_image_files  # noqa: E402
from ppq2l.export.onnx_runtime import CUDA, onnx_backend, preload_cuda_libraries  # noqa: E402
from ppq2l.predict import Predictor  # noqa: E402

# what the CUDA provider of onnxruntime-gpu 1.31 (a CUDA 13 build) links or opens; libcuda is the driver
CUDA_LIBRARIES = ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10",
                  "libcudnn.so.9", "libcuda.so.1")


def cuda_libraries() -> dict:
    """Which CUDA libraries this process can load after onnxruntime's preload, and whether the
    CUDA provider library itself loads (its first missing dependency otherwise). libcuda.so.1 is
    the driver: present only where a GPU driver is installed."""
    preload_cuda_libraries(logging.getLogger("gpu_deploy_check"))
    found, missing = [], {}
    for name in CUDA_LIBRARIES:
        try:
            ctypes.CDLL(name)
            found.append(name)
        except OSError as error:
            missing[name] = str(error)
    provider_file = Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    if not provider_file.is_file():
        provider = "this onnxruntime has no CUDA provider library (install onnxruntime-gpu)"
    else:
        try:
            ctypes.CDLL(str(provider_file))
            provider = "loads"
        except OSError as error:
            provider = str(error)
    return {"preload_dlls": hasattr(onnxruntime, "preload_dlls"), "found": found, "missing": missing,
            "cuda_provider_library": provider}


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class Collect(logging.Handler):
    """Keeps the warnings the backend logs (a GPU provider that failed to start says why there)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("photos")
    parser.add_argument("--use_gpu", action="store_true")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=4, help="times the photos are predicted")
    parser.add_argument("--num_workers", type=int, default=2,
                        help="preprocessing threads (default 2, as the deploy predictor's config)")
    args = parser.parse_args()
    logger = logging.getLogger("gpu_deploy_check")
    collect = Collect()
    logger.addHandler(collect)
    backend = onnx_backend(args.model_dir, use_gpu=args.use_gpu, logger=logger)
    predictor = Predictor.from_backend(backend, batch_size=args.batch_size, num_workers=args.num_workers,
                                       logger=logger)
    files = [path for path in collect_image_files(args.photos, "photos")
             if path.suffix.lower() in IMAGE_SUFFIXES] * args.repeats  # a README beside them is no photo
    predictor.warm_up(files)
    started = time.perf_counter()
    records = predictor(files)
    seconds = time.perf_counter() - started
    on_cuda = CUDA in backend.device
    result = {"providers": backend.device, "on_cuda": on_cuda, "files": len(files),
              "error_records": {record["file_name"]: record["error"] for record in records if "error" in record},
              "images_per_second": len(files) / seconds, "per_image_ms": predictor.timer.per_image_ms(),
              "batch_size": args.batch_size, "num_workers": args.num_workers, "warnings": collect.messages,
              "available_providers": onnxruntime.get_available_providers(),
              "torch_imported": "torch" in sys.modules and sys.modules["torch"] is not None}
    if CUDA in onnxruntime.get_available_providers():  # also without a GPU: would the provider load?
        result["cuda_libraries"] = cuda_libraries()
    print(json.dumps(result))
    return 1 if args.use_gpu and not on_cuda else 0


if __name__ == "__main__":
    sys.exit(main())
