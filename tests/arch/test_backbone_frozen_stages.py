"""frozen_stages on timm backbones: the parameters the official Query2Label freezes in its TResNets
(every one outside layer2-4, backbone.py's rule) are the ones frozen, they stay unchanged by a
training step while the rest train, and an impossible value is refused naming the range."""
import pytest
import torch

from ppq2l.arch import build_model
from ppq2l.arch.backbone import build_backbone
from ppq2l.config import get_config
from ppq2l.errors import ConfigError

from conftest import REPO

TINY_TRESNET = {"layers": [1, 1, 1, 1], "width_factor": 0.5, "pretrained": False}


def official_q2l_frozen(model):
    """Query2Label's backbone.py: requires_grad off for every name without layer2/3/4."""
    return {name for name, _ in model.named_parameters()
            if "layer2" not in name and "layer3" not in name and "layer4" not in name}


@pytest.mark.parametrize("name", ["tresnet_l", "tresnet_v2_l"])
def test_frozen_stages_1_freezes_what_the_official_query2label_freezes(name):
    backbone = build_backbone({"name": name, "frozen_stages": 1, **TINY_TRESNET})
    frozen = {key for key, parameter in backbone.body.named_parameters() if not parameter.requires_grad}
    assert frozen == official_q2l_frozen(backbone.body) == set(backbone.frozen_parameters)
    assert {key.split(".")[1] for key in frozen} == {"conv1", "layer1"}


@pytest.mark.parametrize("config", ["Q2L_TResL_448.yaml", "Q2L_TResL22k_448.yaml"])
def test_the_tresnet_query2label_recipes_freeze_as_the_official(config):
    path = REPO / "configs" / "MultiLabelCOCO" / "Query2Label" / config
    arch = get_config(path, ["Arch.backbone.pretrained=false"])["Arch"]
    assert arch["backbone"]["frozen_stages"] == 1
    arch["backbone"].update({"layers": [1, 1, 1, 1], "width_factor": 0.5})
    arch.update({"hidden_dim": 64, "keep_input_proj": True, "dim_feedforward": 32})
    model = build_model(arch)
    frozen = {key for key, parameter in model.backbone.body.named_parameters()
              if not parameter.requires_grad}
    assert frozen and frozen == official_q2l_frozen(model.backbone.body)


def test_frozen_parameters_do_not_move_and_the_rest_do():
    backbone = build_backbone({"name": "resnet10t", "pretrained": False, "frozen_stages": 2})
    assert {key.split(".")[0] for key in backbone.frozen_parameters} == {"conv1", "bn1", "layer1", "layer2"}
    before = {key: value.clone() for key, value in backbone.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in backbone.parameters() if p.requires_grad], lr=0.1)
    backbone(torch.randn(2, 3, 64, 64)).square().mean().backward()
    optimizer.step()
    after = backbone.state_dict()
    for key in backbone.frozen_parameters:
        assert torch.equal(after[f"body.{key}"], before[f"body.{key}"]), key
    # (zero-initialised last norms of the blocks: their weights move at the first step)
    assert not torch.equal(after["body.layer3.0.bn2.weight"], before["body.layer3.0.bn2.weight"])
    assert build_backbone({"name": "resnet10t", "pretrained": False}).frozen_parameters == ()


@pytest.mark.parametrize("value, message", [
    (5, r"frozen_stages must be an integer from -1 to 4 \(.*resnet10t has 4\), got 5"),
    (-2, r"frozen_stages must be an integer >= -1"), (True, r"frozen_stages must be an integer")])
def test_impossible_frozen_stages_are_refused(value, message):
    with pytest.raises(ConfigError, match=message):
        build_backbone({"name": "resnet10t", "pretrained": False, "frozen_stages": value})
