"""Query2Label / PooledClassifier / build_model: shapes at several resolutions, official key names,
the per-class head, gradients and config mistakes."""
import pytest
import timm
import torch

from ppq2l.arch import build_model
from ppq2l.arch.query2label import GroupWiseLinear
from ppq2l.errors import ConfigError

CLASSES = 5
BACKBONE = {"name": "test_resnet", "pretrained": False}  # 96 channels at stride 32


def q2l(**kwargs):
    arch = dict(name="Query2Label", class_num=CLASSES, backbone=dict(BACKBONE), hidden_dim=64,
                keep_input_proj=True, nheads=4, dim_feedforward=96)
    arch.update(kwargs)
    return build_model(arch)


def head_keys(model):
    return {key for key in model.state_dict() if not key.startswith("backbone.")}


def official_head_keys(dec_layers=2, decoder_self_attn=False):
    """Non-backbone keys of an official Query2Label checkpoint (enc 1, no input_proj)."""
    def weights_and_biases(prefix, modules):
        return {f"{prefix}.{m}.{p}" for m in modules for p in ("weight", "bias")}

    attention = {"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"}
    keys = {f"transformer.encoder.layers.0.self_attn.{a}" for a in attention}
    keys |= weights_and_biases("transformer.encoder.layers.0",
                               ["linear1", "linear2", "norm1", "norm2"])
    for i in range(dec_layers):
        layer = f"transformer.decoder.layers.{i}"
        keys |= {f"{layer}.multihead_attn.{a}" for a in attention}
        keys |= weights_and_biases(layer, ["linear1", "linear2", "norm2", "norm3"])
        if decoder_self_attn:
            keys |= {f"{layer}.self_attn.{a}" for a in attention}
            keys |= weights_and_biases(layer, ["norm1"])
    return keys | weights_and_biases("transformer.decoder", ["norm"]) | {
        "query_embed.weight", "fc.W", "fc.b"}


@pytest.mark.parametrize("size", [(64, 64), (96, 128)])
def test_logits_shape_at_several_resolutions(size):
    model = q2l().eval()
    assert model(torch.randn(2, 3, *size)).shape == (2, CLASSES)


def test_state_dict_keys_equal_the_official_ones():
    model = q2l(hidden_dim=96, keep_input_proj=False)  # backbone channels == hidden: no projection
    assert head_keys(model) == official_head_keys()
    kept = q2l(hidden_dim=96, keep_input_proj=False, keep_decoder_self_attn=True)
    assert head_keys(kept) == official_head_keys(decoder_self_attn=True)
    assert model.fc.W.shape == (1, CLASSES, 96) and model.fc.b.shape == (1, CLASSES)
    assert model.query_embed.weight.shape == (CLASSES, 96)
    assert {"input_proj.weight", "input_proj.bias"} <= head_keys(q2l())


def test_hidden_dim_different_from_backbone_channels_needs_the_projection():
    with pytest.raises(ConfigError, match="96 channels.*hidden_dim is 64.*keep_input_proj"):
        q2l(keep_input_proj=False)


def test_groupwise_linear_is_a_per_class_dot_product():
    head = GroupWiseLinear(3, 4)
    features = torch.randn(2, 3, 4)
    expected = torch.einsum("bkd,kd->bk", features, head.W[0]) + head.b
    manual = torch.tensor([[sum(head.W[0, k, d].item() * features[b, k, d].item() for d in range(4))
                            + head.b[0, k].item() for k in range(3)] for b in range(2)])
    torch.testing.assert_close(head(features), expected)
    torch.testing.assert_close(head(features).detach(), manual)
    assert head.W.abs().max() <= 0.5 and head.b.abs().max() <= 0.5  # U(-1/sqrt(4), 1/sqrt(4))


def test_eval_is_deterministic_and_independent_of_the_batch():
    torch.manual_seed(0)
    model = q2l().eval()
    images = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        logits = model(images)
        torch.testing.assert_close(model(images), logits, atol=0, rtol=0)
        torch.testing.assert_close(model(images[1:2]), logits[1:2], atol=1e-5, rtol=1e-5)


def test_gradients_reach_backbone_queries_and_head():
    model = q2l(dropout=0.0).train()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert model.backbone.body.conv1[0].weight.grad.abs().sum() > 0
    assert model.query_embed.weight.grad.abs().sum() > 0
    assert model.fc.W.grad.abs().sum() > 0


def test_pre_norm_trains():
    torch.manual_seed(0)
    model = q2l(pre_norm=True).train()
    logits = model(torch.randn(2, 3, 64, 64))
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert model.transformer.encoder.norm.weight.grad is not None
    assert model.input_proj.weight.grad.abs().sum() > 0


def test_backbone_weights_come_from_its_own_pretrained_path(tmp_path):
    torch.manual_seed(4)
    state = timm.create_model("test_resnet").state_dict()
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    model = q2l(backbone={"name": "test_resnet", "pretrained": str(path)})
    assert torch.equal(model.backbone.body.layer4[0].conv1.weight, state["layer4.0.conv1.weight"])


def test_pooled_classifier_is_mean_pool_then_linear():
    model = build_model({"name": "PooledClassifier", "class_num": CLASSES,
                         "backbone": dict(BACKBONE)}).eval()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = model.fc(model.backbone(images).mean(dim=(2, 3)))
        torch.testing.assert_close(model(images), expected)
    assert model(images).shape == (2, CLASSES)


@pytest.mark.parametrize("arch,message", [
    ({"class_num": 3, "backbone": BACKBONE}, r"^Arch: expected a mapping with a name"),
    ({"name": "Query2Label", "backbone": BACKBONE}, r"^Arch Query2Label needs class_num$"),
    ({"name": "Query2Label", "class_num": None, "backbone": BACKBONE},
     r"^Arch\.class_num must be a positive integer \(the number of classes the model predicts\)"),
    ({"name": "Query2Lable", "class_num": 3, "backbone": BACKBONE}, "Query2Label"),
    ({"name": "Query2Label", "class_num": 3, "backbone": BACKBONE, "hiden_dim": 96}, "hidden_dim"),
    ({"name": "Query2Label", "class_num": 0, "backbone": BACKBONE}, "class_num must be"),
    ({"name": "Query2Label", "class_num": 3, "backbone": BACKBONE, "hidden_dim": 90,
      "keep_input_proj": True}, "multiple of 4"),
    ({"name": "Query2Label", "class_num": 3, "backbone": BACKBONE, "hidden_dim": 96,
      "nheads": 5}, "divisible"),
    ({"name": "Query2Label", "class_num": 3, "backbone": BACKBONE, "hidden_dim": 96,
      "position_embedding": "learned"}, r"^Arch\.position_embedding must be one of sine, got 'learned'\.$"),
    ({"name": "Query2Label", "class_num": 3, "backbone": {"name": "resnet5O"}}, "resnet50"),
])
def test_config_mistakes_are_config_errors(arch, message):
    with pytest.raises(ConfigError, match=message):
        build_model(arch)
