"""TimmBackbone / build_backbone: feature-map shapes, config mistakes and local weight files."""
import pytest
import timm
import torch
from torch import nn

from ppq2l.arch.backbone import TimmBackbone, build_backbone
from ppq2l.errors import CheckpointError, ConfigError
from ppq2l.registry import BACKBONES


def test_feature_map_is_nchw_at_stride_32_for_non_square_input():
    backbone = TimmBackbone("test_resnet")
    features = backbone(torch.randn(2, 3, 64, 96))
    assert backbone.num_channels == 96 and backbone.stride == 32
    assert features.shape == (2, 96, 2, 3)


def test_build_backbone_passes_timm_keywords():
    backbone = build_backbone({"name": "resnet10t", "pretrained": False, "channels": [8, 8, 8, 24]})
    assert backbone.num_channels == 24
    assert backbone(torch.randn(1, 3, 64, 64)).shape == (1, 24, 2, 2)


def test_unknown_name_suggests_close_timm_models():
    with pytest.raises(ConfigError, match=r"Arch\.backbone.*'resnet5O'.*'resnet50'"):
        build_backbone({"name": "resnet5O"})


def test_missing_name_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^Arch\.backbone: expected a mapping with a name, e\.g\. "
                                          r"\{name: resnet50, .*registered backbones: CvT, Torchvision"):
        build_backbone({"pretrained": False})


def test_bad_timm_keyword_is_named():
    with pytest.raises(ConfigError, match="not_a_resnet_option"):
        build_backbone({"name": "test_resnet", "not_a_resnet_option": 3})


def test_wrong_out_stride_names_the_real_stride():
    with pytest.raises(ConfigError, match="stride 32.*out_stride: 32"):
        TimmBackbone("test_resnet", out_stride=16)


def test_dilated_backbone_with_matching_out_stride():
    backbone = TimmBackbone("test_resnet", out_stride=16, output_stride=16)
    assert backbone(torch.randn(1, 3, 64, 64)).shape[-2:] == (4, 4)


@pytest.mark.parametrize("pretrained", [1, "", None, ["a"]])
def test_bad_pretrained_value(pretrained):
    with pytest.raises(ConfigError, match="pretrained must be"):
        TimmBackbone("test_resnet", pretrained=pretrained)


def test_registered_backbone_is_built_with_its_keywords(monkeypatch):
    class TinyBackbone(nn.Module):
        def __init__(self, width: int = 4) -> None:
            super().__init__()
            self.num_channels, self.stride = width, 32
            self.conv = nn.Conv2d(3, width, 32, stride=32)

        def forward(self, images):
            return self.conv(images)

    monkeypatch.setitem(BACKBONES._entries, "TinyBackbone", TinyBackbone)
    assert build_backbone({"name": "TinyBackbone", "width": 6}).num_channels == 6
    with pytest.raises(ConfigError, match="unknown keyword 'depth'"):
        build_backbone({"name": "TinyBackbone", "depth": 2})


def full_model_state(name: str, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False).state_dict()  # with its classifier


@pytest.mark.parametrize("name,classifier_key", [("test_resnet", "fc.weight"),
                                                 ("test_convnext", "head.fc.weight")])
def test_local_weights_drop_the_classifier_and_load_exactly(tmp_path, name, classifier_key):
    state = full_model_state(name, seed=1)
    assert classifier_key in state
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    backbone = build_backbone({"name": name, "pretrained": str(path)})
    loaded = backbone.body.state_dict()
    assert classifier_key not in loaded
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key


def test_local_weights_under_state_dict_with_module_prefix(tmp_path):
    state = full_model_state("test_resnet", seed=2)
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": {"module." + key: value for key, value in state.items()},
                "epoch": 3}, path)
    backbone = TimmBackbone("test_resnet", pretrained=str(path))
    assert torch.equal(backbone.body.conv1[0].weight, state["conv1.0.weight"])


def test_local_weights_without_batchnorm_counters_load(tmp_path):
    state = {key: value for key, value in full_model_state("test_resnet").items()
             if not key.endswith("num_batches_tracked")}
    path = tmp_path / "frozen_bn.pth"
    torch.save(state, path)
    backbone = TimmBackbone("test_resnet", pretrained=str(path))
    assert torch.equal(backbone.body.bn1.running_var, state["bn1.running_var"])


def test_local_weights_that_do_not_fit_name_the_keys(tmp_path):
    state = full_model_state("test_resnet")
    del state["layer1.0.conv1.weight"]
    state["bn1.weight"] = torch.ones(7)
    state["extra.weight"] = torch.ones(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as caught:
        TimmBackbone("test_resnet", pretrained=str(path))
    message = str(caught.value)
    assert "missing (1): layer1.0.conv1.weight" in message
    assert "unexpected (1): extra.weight" in message
    assert "shape mismatch (1): bn1.weight (7,)" in message


def test_missing_and_corrupt_weight_files(tmp_path):
    with pytest.raises(CheckpointError, match="backbone weight file not found: .*nope.pth"):
        TimmBackbone("test_resnet", pretrained=str(tmp_path / "nope.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read backbone weight file .*corrupt.pth: "
                                              "it is truncated, corrupt or not a torch file"):
        TimmBackbone("test_resnet", pretrained=str(corrupt))
    not_weights = tmp_path / "not_weights.pth"
    torch.save({"epoch": 3, "lr": 0.1}, not_weights)
    with pytest.raises(CheckpointError, match=r"not_weights.pth contains no tensors \(its keys: "
                                              r"epoch, lr\)"):
        TimmBackbone("test_resnet", pretrained=str(not_weights))


def test_token_output_comes_out_as_a_map_at_the_patch_stride():
    backbone = TimmBackbone("test_vit")
    size = backbone.body.patch_embed.img_size
    rows, cols = (side // backbone.stride for side in size)
    assert backbone(torch.randn(1, 3, *size)).shape == (1, backbone.num_channels, rows, cols)
