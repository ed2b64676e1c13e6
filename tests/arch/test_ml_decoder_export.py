"""ONNX export of an ML-Decoder model: onnxruntime matches torch, also at other input sizes."""
from ppq2l.arch import build_model
from ppq2l.config import get_config
from ppq2l.engine.checkpoint import save_checkpoint
from ppq2l.export.metadata import read_inference_yml
from ppq2l.export.onnx_export import export_from_config

from conftest import DEMO_CONFIG, tiny_overrides

TINY_ML_DECODER = ("Arch={name: MLDecoder, class_num: 12, num_of_groups: 5, decoder_embedding: 16, "
                   "nheads: 2, dim_feedforward: 32, backbone: {name: resnet10t, pretrained: false, "
                   "channels: [8, 16, 32, 64]}}")


def test_ml_decoder_onnxruntime_matches_torch(tiny_demo_root, tmp_path):
    overrides = tiny_overrides(tiny_demo_root, tmp_path / "output") + [
        TINY_ML_DECODER, "Global.image_shape=[3, 64, 64]",
        f"Global.save_inference_dir={tmp_path / 'inference'}", "Global.export_dynamic_spatial=True"]
    config = get_config(DEMO_CONFIG, overrides)
    save_checkpoint({"model": build_model(config["Arch"]).state_dict()}, tmp_path / "weights.pth")
    config["Global"]["pretrained_model"] = str(tmp_path / "weights.pth")
    summary = export_from_config(config)
    assert {"1x3x64x64", "4x3x64x64", "2x3x96x96"} <= set(summary["max_abs_diff"])
    assert all(diff <= 1e-4 for diff in summary["max_abs_diff"].values()), summary
    assert read_inference_yml(tmp_path / "inference" / "inference.yml")["arch"] == "MLDecoder"
