"""Every shipped config resolves, and its model, loss, metrics, optimizer and transforms build
(pretrained weights switched off, small input) and run a forward pass."""
from pathlib import Path

import pytest
import torch

from ppq2l.arch import build_model
from ppq2l.config import get_config
from ppq2l.data.device_normalize import split_device_normalization
from ppq2l.data.transforms import build_transforms
from ppq2l.export.onnx_export import inference_transforms
from ppq2l.loss import build_loss
from ppq2l.metric import build_metrics
from ppq2l.optimizer import build_optimizer

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_config_builds_and_runs(path):
    config = get_config(path, ["Arch.backbone.pretrained=false"])
    model = build_model(config["Arch"]).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, config["Arch"]["class_num"])
    loss = build_loss(config["Loss"]["Train"])(logits, torch.randint(0, 2, logits.shape).float())
    assert torch.isfinite(loss["loss"])
    assert build_metrics(config["Metric"]["Eval"])
    build_optimizer(config["Optimizer"], model, steps_per_epoch=10, epochs=config["Global"]["epochs"])
    for split in ("Train", "Eval"):
        section = config["DataLoader"][split]
        transforms = build_transforms(section["dataset"]["transform_ops"], f"DataLoader.{split}")
        if (section.get("loader") or {}).get("normalize_on_device"):
            split_device_normalization(transforms, f"DataLoader.{split}")  # ends with normalisation
    build_transforms(inference_transforms(config), "inference preprocessing")
