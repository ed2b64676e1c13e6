"""model_info: parameter counts and multiply-adds checked against hand-computed numbers, and the
CLI on the tiny demo config."""
import os
import subprocess
import sys

import pytest
from torch import nn

from ppq2l.config import get_config
from ppq2l.errors import ConfigError
from ppq2l.utils.model_info import count_parameters, forward_gmacs, model_info, model_info_from_config

from conftest import DEMO_CONFIG, REPO


class ConvLinear(nn.Module):
    """conv 3->4 (3x3, stride 1, padding 1) on 8x8, global average, linear 4->5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_counts_match_a_hand_computed_conv_and_linear_model():
    model = ConvLinear()
    model.fc.weight.requires_grad_(False)
    # conv: 4*3*3*3 weights + 4 biases = 112; fc: 5*4 + 5 = 25 (20 of them frozen).
    assert count_parameters(model) == (137, 117)
    # conv: each of 4*8*8 outputs takes 3*3*3 multiply-adds; fc: 5*4. Biases are not counted.
    macs = 4 * 8 * 8 * 27 + 5 * 4
    assert forward_gmacs(model, [3, 8, 8]) == pytest.approx(macs / 1e9)
    info = model_info(model, (3, 8, 8))
    assert info.gmacs * 1e9 == pytest.approx(macs) and info.total_params == 137
    assert "0.00 M total" in info.report() and "3x8x8" in info.report()


def test_model_mode_is_restored():
    model = ConvLinear().train()
    forward_gmacs(model, [3, 8, 8])
    assert model.training


@pytest.mark.parametrize("shape", [[3, 8], [3, 0, 8], "3x8x8", [3.0, 8, 8]])
def test_bad_image_shape_is_a_config_error(shape):
    with pytest.raises(ConfigError, match=r"^Global\.image_shape must be a list of 3 positive integers, "
                                          r"like \[3, 224, 224\] \(channels, height, width\), got "):
        forward_gmacs(ConvLinear(), shape)


def test_cli_prints_the_counts_of_the_config_model():
    config = get_config(DEMO_CONFIG, ["Arch.backbone.pretrained=false"])
    expected = model_info_from_config(config)
    result = subprocess.run([sys.executable, str(REPO / "tools" / "model_info.py"), "-c",
                             str(DEMO_CONFIG), "-o", "Arch.backbone.pretrained=false"],
                            capture_output=True, text=True, check=False,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected.report()
    assert expected.gmacs > 0 and expected.total_params >= expected.trainable_params > 0


def test_missing_image_shape_is_a_config_error():
    config = get_config(DEMO_CONFIG, ["Arch.backbone.pretrained=false"])
    del config["Global"]["image_shape"]
    with pytest.raises(ConfigError, match="Global.image_shape is missing"):
        model_info_from_config(config)
