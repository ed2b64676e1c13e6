"""Turning model scores into per-image records; numpy only, shared by the tools and the deploy
predictor. Importing the package registers every postprocess."""
from __future__ import annotations

from typing import Any

from ppq2l.postprocess import multilabel_thresh_output
from ppq2l.postprocess.multilabel_thresh_output import MultiLabelThreshOutput
from ppq2l.registry import POSTPROCESSES

__all__ = ["multilabel_thresh_output", "MultiLabelThreshOutput", "build_postprocess"]


def build_postprocess(config: dict[str, Any] | None, where: str = "Infer.PostProcess",
                      **extra: Any) -> Any:
    """Build the postprocess described by `{name: ..., <keywords>}` (the Infer.PostProcess shape)."""
    return POSTPROCESSES.build_mapping(config, where, example="{name: MultiLabelThreshOutput, "
                                       "threshold: 0.5}", **extra)
