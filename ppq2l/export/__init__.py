"""Exporting trained models for deployment and running them. `metadata` needs neither torch nor
onnx, `onnx_runtime` (the onnxruntime backend of ppq2l.predict) needs no torch; the ONNX exporter
(`onnx_export`, torch) is imported only when asked for, so a deploy predictor can use this package
without torch."""
from __future__ import annotations

from ppq2l.export import metadata

__all__ = ["metadata"]
