"""TimmBackbone on ViT-style models: token sequences come out as NCHW maps at the patch stride."""
import pytest
import torch

from ppq2l.arch.backbone import build_backbone
from ppq2l.errors import ConfigError

TINY_VIT = {"name": "vit_tiny_patch16_224", "embed_dim": 32, "depth": 1, "num_heads": 2}


def test_vit_tokens_become_a_map_at_a_non_default_size():
    backbone = build_backbone({**TINY_VIT, "dynamic_img_size": True, "reg_tokens": 2})
    assert backbone.stride == 16 and backbone.num_channels == 32
    assert backbone.body.num_prefix_tokens == 3  # class + 2 register tokens are dropped
    images = torch.randn(2, 3, 64, 96)
    features = backbone(images)
    assert features.shape == (2, 32, 4, 6)
    tokens = backbone.body.forward_features(images)
    # Patch token number r*6 + c lands at row r, column c.
    assert torch.equal(features[:, :, 1, 2], tokens[:, 3 + 1 * 6 + 2])
    assert torch.equal(features[:, :, 3, 5], tokens[:, -1])


def test_eva_class_token_is_dropped_and_stride_is_its_patch_size():
    backbone = build_backbone({"name": "eva02_tiny_patch14_224", "embed_dim": 32, "depth": 1,
                               "num_heads": 2, "img_size": 56})
    assert backbone.stride == 14
    images = torch.randn(1, 3, 56, 56)
    tokens = backbone.body.forward_features(images)
    assert tokens.shape[1] == 1 + 16
    assert torch.equal(backbone(images).flatten(2).transpose(1, 2), tokens[:, 1:])


def test_fixed_size_vit_names_the_fix_for_another_size():
    backbone = build_backbone(TINY_VIT)
    with pytest.raises(ConfigError, match=r"built for 224x224.*64x96.*dynamic_img_size"):
        backbone(torch.randn(1, 3, 64, 96))


def test_configured_out_stride_must_match_the_patch_size():
    with pytest.raises(ConfigError, match="stride 16, but out_stride is 32"):
        build_backbone({**TINY_VIT, "out_stride": 32})
