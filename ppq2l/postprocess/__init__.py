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
    from ppq2l.errors import ConfigError

    if not isinstance(config, dict) or not config.get("name"):
        raise ConfigError(f"{where} must be a mapping with a 'name' (registered: "
                          f"{', '.join(POSTPROCESSES.names())}), got {config!r}")
    kwargs = {key: value for key, value in config.items() if key != "name"}
    return POSTPROCESSES.build(config["name"], kwargs, where=where, **extra)
