"""TResNet through timm (no inplace_abn in timm's port): builds without weights and gives
stride-32 maps with the channel counts Query2Label's configs use."""
import pytest
import torch

from ppq2l.arch.backbone import build_backbone


@pytest.mark.parametrize("name, channels", [
    ("tresnet_m", 2048), ("tresnet_l", 2432), ("tresnet_xl", 2656), ("tresnet_v2_l", 2048)])
def test_tresnet_builds_and_gives_a_stride_32_map(name, channels):
    backbone = build_backbone({"name": name, "pretrained": False})
    assert backbone.num_channels == channels and backbone.stride == 32
    with torch.no_grad():
        assert backbone.eval()(torch.randn(1, 3, 64, 96)).shape == (1, channels, 2, 3)
