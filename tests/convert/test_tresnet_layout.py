"""Official TResNet (InPlaceABN) key names and weights become timm's; other layouts stay."""
import torch

from ppq2l.convert.tresnet_layout import official_tresnet_to_timm, tresnet_key_to_timm


def test_official_names_map_to_timm_names():
    expected = {
        "body.conv1.0.weight": "body.conv1.conv.weight",
        "body.conv1.1.running_var": "body.conv1.bn.running_var",
        "body.layer1.0.conv2.1.bias": "body.layer1.0.conv2.bn.bias",
        # strided convolution followed by anti-aliasing: (conv, InPlaceABN) wrapped once more
        "body.layer3.0.conv2.0.0.weight": "body.layer3.0.conv2.conv.weight",
        "body.layer3.0.conv2.0.1.running_mean": "body.layer3.0.conv2.bn.running_mean",
        # shortcut after average pooling (index 1) and without it (index 0)
        "body.layer2.0.downsample.1.0.weight": "body.layer2.0.downsample.1.conv.weight",
        "body.layer1.0.downsample.0.1.weight": "body.layer1.0.downsample.0.bn.weight",
        "body.layer3.12.se.fc1.weight": "body.layer3.12.se.fc1.weight",
        "head.fc.bias": "head.fc.bias",
    }
    assert {key: tresnet_key_to_timm(key)[0] for key in expected} == expected
    assert tresnet_key_to_timm("body.layer1.0.downsample.0.1.weight")[1]
    assert not tresnet_key_to_timm("body.layer1.0.downsample.0.1.bias")[1]
    assert not tresnet_key_to_timm("body.conv1.0.weight")[1]


def _official_stem_and_block(prefix=""):
    weights = {}
    for layer, channels in (("body.conv1", 4), ("body.layer1.0.conv1", 4)):
        weights[f"{prefix}{layer}.0.weight"] = torch.randn(channels, 4, 1, 1)
        weights[f"{prefix}{layer}.1.weight"] = torch.tensor([-0.5, 0.0, 0.25, 2.0])
        weights[f"{prefix}{layer}.1.bias"] = torch.randn(channels)
        weights[f"{prefix}{layer}.1.running_mean"] = torch.randn(channels)
        weights[f"{prefix}{layer}.1.running_var"] = torch.rand(channels) + 0.5
    return weights


def test_inplace_abn_scale_becomes_batchnorm_weight_and_counter_is_added():
    official = _official_stem_and_block()
    converted = official_tresnet_to_timm(official)
    assert torch.equal(converted["body.conv1.bn.weight"],
                       torch.tensor([0.5, 0.0, 0.25, 2.0]) + 1e-5)
    assert torch.equal(converted["body.conv1.bn.running_var"], official["body.conv1.1.running_var"])
    assert torch.equal(converted["body.layer1.0.conv1.conv.weight"],
                       official["body.layer1.0.conv1.0.weight"])
    counter = converted["body.layer1.0.conv1.bn.num_batches_tracked"]
    assert counter.dtype == torch.long and counter.item() == 0
    assert len(converted) == len(official) + 2


def test_only_the_tresnet_inside_a_larger_model_is_renamed():
    official = _official_stem_and_block("backbone.0.body.")  # Query2Label's nesting
    official["transformer.decoder.layers.0.linear1.weight"] = torch.randn(2, 2)
    official["query_embed.weight"] = torch.randn(2, 2)
    converted = official_tresnet_to_timm(official)
    assert "backbone.0.body.body.conv1.conv.weight" in converted
    assert "transformer.decoder.layers.0.linear1.weight" in converted
    assert "query_embed.weight" in converted


def test_deep_stem_resnet_is_left_alone():
    # timm's resnet10t/resnet50d name their stem conv1.0/conv1.1 but their blocks plainly.
    weights = {"body.conv1.0.weight": torch.randn(4, 3, 3, 3),
               "body.conv1.1.weight": torch.tensor([-1.0, 1.0, 1.0, 1.0]),
               "body.layer1.0.conv1.weight": torch.randn(4, 4, 1, 1),
               "body.layer1.0.downsample.1.weight": torch.ones(4)}
    converted = official_tresnet_to_timm(weights)
    assert converted.keys() == weights.keys()
    assert all(converted[key] is weights[key] for key in weights)
