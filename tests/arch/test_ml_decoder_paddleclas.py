"""PaddleClas's Arch spelling (`use_ml_decoder` + `MLDecoder`) builds the same model as ours."""
import pytest
import torch

from ppq2l.arch import MLDecoder, PooledClassifier, build_model
from ppq2l.arch.ml_decoder_paddleclas import from_paddleclas_spelling
from ppq2l.errors import ConfigError

PADDLECLAS_ARCH = {"name": "ResNet18", "class_num": 20, "pretrained": False, "use_ml_decoder": True,
                   "MLDecoder": {"query_num": 10, "in_channels": 512, "embed_dim": 64,
                                 "num_heads": 4, "mlp_hidden_dim": 128}}
OUR_ARCH = {"name": "MLDecoder", "class_num": 20, "backbone": {"name": "resnet18", "pretrained": False},
            "num_of_groups": 10, "initial_num_features": 512, "decoder_embedding": 64, "nheads": 4,
            "dim_feedforward": 128}


def test_paddleclas_spelling_builds_the_same_model():
    assert from_paddleclas_spelling(PADDLECLAS_ARCH) == OUR_ARCH
    assert from_paddleclas_spelling(OUR_ARCH) is OUR_ARCH  # our spelling passes unchanged
    theirs, ours = build_model(PADDLECLAS_ARCH).eval(), build_model(OUR_ARCH).eval()
    assert isinstance(theirs, MLDecoder)
    assert {k: v.shape for k, v in theirs.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
    theirs.load_state_dict(ours.state_dict(), strict=True)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(theirs(images), ours(images))


def test_without_ml_decoder_it_is_the_pooled_baseline():
    model = build_model({"name": "ResNet18", "class_num": 3, "pretrained": False})
    assert isinstance(model, PooledClassifier) and model.fc.out_features == 3


@pytest.mark.parametrize("change, message", [
    ({"MLDecoder": {"query_num": 10, "in_chanels": 512}}, "unknown key 'in_chanels'. Did you mean 'in_channels'"),
    ({"MLDecoder": {"class_num": 21}}, "MLDecoder.class_num \\(21\\) differs from Arch.class_num \\(20\\)"),
    ({"MLDecoder": {"activation": "gelu"}}, "activation: only 'relu' is supported"),
    ({"MLDecoder": {"in_channels": 2048}}, "initial_num_features is 2048 but backbone 'resnet18' gives 512"),
    ({"use_ml_decoder": False}, "MLDecoder is set but Arch.use_ml_decoder is not true"),
    ({"name": "ResNet50_vd"}, "need a PaddleClas backbone name, got 'ResNet50_vd'"),
    ({"image_size": 448}, "unknown keys \\['image_size'\\]"),
])
def test_paddleclas_spelling_errors(change, message):
    with pytest.raises(ConfigError, match=message):
        build_model({**PADDLECLAS_ARCH, **change})
