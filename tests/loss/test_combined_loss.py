"""build_loss/CombinedLoss: weighting, component keys and malformed entries; BCEWithLogitsLoss."""
import pytest
import torch
import torch.nn.functional as F

from ppq2l.errors import ConfigError
from ppq2l.loss import AsymmetricLoss, BCEWithLogitsLoss, CombinedLoss, build_loss


def sample():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    targets = (torch.rand(4, 5, generator=generator) > 0.5).to(torch.float64)
    return logits, targets


def test_weighted_sum_and_component_keys():
    loss = build_loss([{"AsymmetricLoss": {"weight": 2.0, "gamma_neg": 2, "clip": 0.0}},
                       {"BCEWithLogitsLoss": {"weight": 0.5}}])
    logits, targets = sample()
    values = loss(logits, targets)
    asl = AsymmetricLoss(gamma_neg=2, clip=0.0)(logits, targets)
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    assert set(values) == {"loss", "AsymmetricLoss", "BCEWithLogitsLoss"}
    torch.testing.assert_close(values["AsymmetricLoss"], 2.0 * asl)
    torch.testing.assert_close(values["BCEWithLogitsLoss"], 0.5 * bce)
    torch.testing.assert_close(values["loss"], 2.0 * asl + 0.5 * bce)


def test_weight_defaults_to_one_and_empty_keywords_mean_defaults():
    loss = build_loss([{"AsymmetricLoss": None}])
    logits, targets = sample()
    torch.testing.assert_close(loss(logits, targets)["loss"], AsymmetricLoss()(logits, targets))


def test_repeated_class_gets_index_suffix():
    loss = build_loss([{"AsymmetricLoss": {"gamma_neg": 4}}, {"BCEWithLogitsLoss": {}},
                       {"AsymmetricLoss": {"gamma_neg": 0, "weight": 0.0}}])
    values = loss(*sample())
    assert set(values) == {"loss", "AsymmetricLoss_0", "BCEWithLogitsLoss", "AsymmetricLoss_2"}
    assert values["AsymmetricLoss_2"].item() == 0.0
    assert loss.components["AsymmetricLoss_0"].gamma_neg == 4.0


def test_gradients_reach_the_logits():
    loss = build_loss([{"AsymmetricLoss": {}}, {"BCEWithLogitsLoss": {}}])
    logits = torch.randn(3, 4, requires_grad=True)
    loss(logits, torch.ones(3, 4))["loss"].backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("entries, message", [
    (None, "Loss.Train: expected a non-empty list"),
    ([], "Loss.Train: expected a non-empty list"),
    ({"AsymmetricLoss": {}}, "Loss.Train: expected a non-empty list"),
    (["AsymmetricLoss"], r"Loss.Train.0: expected a one-key mapping"),
    ([{"AsymmetricLoss": {}, "BCEWithLogitsLoss": {}}], r"Loss.Train.0: expected a one-key mapping"),
    ([{"AsymmetricLoss": {}}, {"BCEWithLogitsLoss": [1, 2]}], r"Loss.Train.1: the keywords"),
    ([{"AsymmetricLoss": {"weight": "heavy"}}],
     r"Loss\.Train\.0 AsymmetricLoss: weight must be a finite number >= 0, got 'heavy'"),
    ([{"AsymmetricLoss": {"weight": -1.0}}], r"Loss\.Train\.0 AsymmetricLoss: weight must be"),
    ([{"AsymmetricLoss": {"clip": 1.0}}],
     r"Loss\.Train\.0 AsymmetricLoss: clip must be a number in \[0, 1\) \(0 disables the margin\)"),
    ([{"AsymetricLoss": {}}], r"Loss.Train.0: unknown loss 'AsymetricLoss'.*AsymmetricLoss"),
    ([{"BCEWithLogitsLoss": {}}, {"AsymmetricLoss": {"gama_neg": 2}}],
     r"Loss.Train.1 AsymmetricLoss: unknown keyword 'gama_neg'.*gamma_neg"),
])
def test_malformed_entries_name_the_place(entries, message):
    with pytest.raises(ConfigError, match=message):
        build_loss(entries)


def test_component_keys_must_be_unique():
    with pytest.raises(ConfigError, match="unique"):
        CombinedLoss([("a", 1.0, AsymmetricLoss()), ("a", 1.0, AsymmetricLoss())])


def test_bce_matches_torch_with_per_class_positive_weight():
    logits, targets = sample()
    pos_weight = [1.0, 2.0, 0.5, 3.0, 1.5]
    value = BCEWithLogitsLoss(reduction="sum", pos_weight=pos_weight)(logits, targets)
    expected = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum",
                                                  pos_weight=torch.tensor(pos_weight, dtype=torch.float64))
    torch.testing.assert_close(value, expected)


def test_bce_computes_half_precision_inputs_in_float32():
    logits = torch.tensor([[20.0, -20.0, 3.0]], dtype=torch.float16, requires_grad=True)
    targets = torch.tensor([[0.0, 1.0, 1.0]], dtype=torch.float16)
    value = BCEWithLogitsLoss()(logits, targets)
    value.backward()
    expected = F.binary_cross_entropy_with_logits(logits.detach().double(), targets.double())
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"reduction": "none"}, "mean, sum"),
    ({"pos_weight": -1.0}, "pos_weight"),
    ({"pos_weight": []}, "pos_weight"),
    ({"pos_weight": ["a"]}, "pos_weight"),
])
def test_bce_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BCEWithLogitsLoss(**kwargs)


def test_bce_pos_weight_length_must_match_classes():
    with pytest.raises(ConfigError, match="3 values but the model predicts 5 classes"):
        BCEWithLogitsLoss(pos_weight=[1.0, 2.0, 3.0])(*sample())
