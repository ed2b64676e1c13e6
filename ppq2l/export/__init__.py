"""Exporting trained models for deployment. `metadata` needs neither torch nor onnx; the ONNX
exporter (`onnx_export`, torch) is imported only when asked for, so a deploy predictor can use
this package without torch."""
from __future__ import annotations

from ppq2l.export import metadata

__all__ = ["metadata"]
