"""Per-label maps from every head: the logits are the plain forward's to the bit, the maps have
the feature map's shape, are non-negative, and are the attention the heads really compute
(checked against torch's own nn.MultiheadAttention weights) or the class activation maps."""
import numpy as np
import pytest
import torch
from torch import nn

from ppq2l.arch import build_model
from ppq2l.errors import ConfigError
from ppq2l.explain.maps import ScoresAndMaps, explain, map_peaks, upsample_maps
from ppq2l.explain.render import resize_map

BACKBONE = {"name": "resnet10t", "pretrained": False, "channels": [8, 16, 32, 64]}
Q2L = {"name": "Query2Label", "class_num": 5, "backbone": BACKBONE, "hidden_dim": 32,
       "keep_input_proj": True, "nheads": 2, "dim_feedforward": 64, "dec_layers": 2}
ARCHS = {
    "q2l": Q2L,
    "q2l_prenorm_selfattn": {**Q2L, "pre_norm": True, "keep_decoder_self_attn": True},
    "mldecoder_groups": {"name": "MLDecoder", "class_num": 7, "backbone": BACKBONE,
                         "num_of_groups": 3, "decoder_embedding": 32, "nheads": 2,
                         "dim_feedforward": 64, "num_layers": 2},
    "mldecoder_full": {"name": "MLDecoder", "class_num": 4, "backbone": BACKBONE,
                       "num_of_groups": -1, "decoder_embedding": 32, "nheads": 4,
                       "dim_feedforward": 64},
    "pooled": {"name": "PooledClassifier", "class_num": 5, "backbone": BACKBONE},
}
IMAGES = (3, 3, 96, 128)  # resnet10t: stride 32 -> a 3x4 feature map


def model_and_images(name):
    torch.manual_seed(0)
    return build_model(ARCHS[name]).eval(), torch.randn(*IMAGES)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_maps_come_with_the_plain_forwards_logits_at_the_feature_resolution(name):
    model, images = model_and_images(name)
    with torch.no_grad():
        plain = model(images)
        logits, maps = explain(model, images)
    assert torch.equal(logits, plain)  # bit for bit: the maps add computation, change none
    assert maps.shape == (3, ARCHS[name]["class_num"], 3, 4)
    assert (maps >= 0).all()
    if name != "pooled":  # attention is a distribution over the feature map
        torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(maps.shape[:2]))


def mha_weights(attention, query, key):
    """torch's own per-head weights of `attention` for these inputs (need_weights=True path)."""
    reference = nn.MultiheadAttention(query.shape[-1], attention.num_heads, batch_first=True)
    reference.load_state_dict({"in_proj_weight": attention.in_proj_weight,
                               "in_proj_bias": attention.in_proj_bias,
                               "out_proj.weight": attention.out_proj.weight,
                               "out_proj.bias": attention.out_proj.bias})
    return reference.eval()(query, key, key, need_weights=True, average_attn_weights=False)[1]


def captured_inputs(module, run):
    """The (query, key) positional inputs of `module`'s calls while `run()` runs."""
    seen = []
    handle = module.register_forward_pre_hook(lambda _, args, kwargs: seen.append(
        (args[0], args[1] if len(args) > 1 else kwargs["key"])), with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("layer", [0, 1, -1])
def test_query2label_maps_are_the_decoder_cross_attention_of_that_layer(layer):
    model, images = model_and_images("q2l")
    attention = model.transformer.decoder.layers[layer].multihead_attn
    with torch.no_grad():
        (query, key), = captured_inputs(attention, lambda: model(images))
        expected = mha_weights(attention, query, key)  # [B, heads, K, h*w]
        mean = explain(model, images, layer=layer)[1]
        per_head = [explain(model, images, layer=layer, head=h)[1] for h in range(2)]
    torch.testing.assert_close(mean, expected.mean(1).reshape(3, 5, 3, 4), atol=1e-6, rtol=1e-5)
    for head, maps in enumerate(per_head):
        torch.testing.assert_close(maps, expected[:, head].reshape(3, 5, 3, 4), atol=1e-6, rtol=1e-5)


def test_the_layers_and_heads_give_different_maps():
    model, images = model_and_images("q2l")
    with torch.no_grad():
        last, first = explain(model, images)[1], explain(model, images, layer=0)[1]
        heads = [explain(model, images, head=h)[1] for h in range(2)]
    assert not torch.allclose(last, first)
    assert not torch.allclose(heads[0], heads[1])
    torch.testing.assert_close((heads[0] + heads[1]) / 2, last)


def test_ml_decoder_maps_are_the_attention_of_the_query_that_predicts_each_class():
    model, images = model_and_images("mldecoder_groups")  # 7 classes, 3 queries: 3 + 3 + 1
    attention = model.head.decoder.layers[-1].multihead_attn
    with torch.no_grad():
        (query, key), = captured_inputs(attention, lambda: model(images))
        expected = mha_weights(attention, query, key).mean(1).reshape(3, 3, 3, 4)
        maps = explain(model, images)[1]
    for class_id in range(7):
        torch.testing.assert_close(maps[:, class_id], expected[:, class_id // 3], atol=1e-6, rtol=1e-5)


def test_pooled_maps_are_class_activation_maps_that_average_to_the_logits():
    model, images = model_and_images("pooled")
    with torch.no_grad():
        features = model.backbone(images)
        logits, maps = explain(model, images)
    activations = torch.einsum("bdhw,cd->bchw", features, model.fc.weight)
    torch.testing.assert_close(maps, activations.clamp_min(0))
    torch.testing.assert_close(activations.mean(dim=(2, 3)) + model.fc.bias, logits)


@pytest.mark.parametrize("options, fragment", [
    ({"layer": 2}, "layer must be an integer from -2 to 1"),
    ({"layer": -3}, "2 decoder layer(s)"),
    ({"head": 2}, "head must be an integer from 0 to 1"),
])
def test_a_layer_or_head_that_does_not_exist_is_named(options, fragment):
    model, images = model_and_images("q2l")
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        explain(model, images, **options)


def test_pooled_maps_refuse_layer_and_head():
    model, images = model_and_images("pooled")
    with pytest.raises(ConfigError, match="class activation maps"):
        explain(model, images, head=0)


class NoMaps(nn.Module):
    def forward(self, images):
        return images.mean(dim=(2, 3))


def test_a_model_without_maps_names_itself_and_the_heads_that_have_them():
    for ask in (lambda: explain(NoMaps(), torch.zeros(1, 3, 8, 8)), lambda: ScoresAndMaps(NoMaps())):
        with pytest.raises(ConfigError, match="NoMaps has no per-label maps.*Query2Label"):
            ask()


def test_upsampling_to_the_image_size_agrees_with_the_numpy_helper():
    maps = torch.rand(2, 3, 4, 5)
    resized = upsample_maps(maps, (37, 50))
    assert resized.shape == (2, 3, 37, 50) and (resized >= 0).all()
    np.testing.assert_allclose(resized[1, 2].numpy(), resize_map(maps[1, 2].numpy(), 50, 37),
                               atol=1e-5)
    # the hottest cell stays the hottest region
    maps = torch.zeros(1, 1, 4, 4)
    maps[0, 0, 3, 1] = 1.0
    row, column = divmod(int(upsample_maps(maps, (40, 40)).flatten().argmax()), 40)
    assert 30 <= row < 40 and 10 <= column < 20


def test_map_peaks_are_the_highest_cell_refined_by_its_neighbours():
    maps = torch.zeros(2, 2, 4, 5)
    maps[0, 0, 3, 1] = 1.0  # alone: its cell centre
    maps[1, 1, 0, 4] = 2.0
    maps[1, 1, 1, 4] = 1.0  # a neighbour below pulls the peak down a third of a cell
    maps[1, 1, 3, 0] = 1.5  # not a neighbour: no effect
    peaks = map_peaks(maps)
    torch.testing.assert_close(peaks[0, 0], torch.tensor([1.5 / 5, 3.5 / 4]))
    torch.testing.assert_close(peaks[1, 1], torch.tensor([4.5 / 5, (0.5 * 2 + 1.5) / 3 / 4]))
    torch.testing.assert_close(peaks[0, 1], torch.tensor([0.5 / 5, 0.5 / 4]))  # all zero
