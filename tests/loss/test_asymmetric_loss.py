"""AsymmetricLoss against an element-by-element evaluation of the ASL formula, its gradients with
and without the detached focal weight, reductions, half-precision inputs and argument checks."""
import math

import pytest
import torch

from ppq2l.errors import ConfigError
from ppq2l.loss import AsymmetricLoss

LOGITS = [[2.0, -1.0, 0.3, -4.0], [-0.5, 3.5, -2.2, 0.0], [1.2, -0.1, 6.0, -7.5]]
HARD = [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]]
SOFT = [[0.7, 0.0, 1.0, 0.2], [0.0, 0.45, 0.0, 1.0], [1.0, 0.3, 0.05, 0.0]]


def reference_loss(logits, targets, gamma_pos, gamma_neg, clip, eps, reduction):
    """The ASL formula written out one element at a time in plain Python floats."""
    total = 0.0
    for row_x, row_y in zip(logits, targets):
        for x, y in zip(row_x, row_y):
            p = 1.0 / (1.0 + math.exp(-x))
            p_m = max(p - clip, 0.0) if clip > 0 else p
            positive = y * (1 - p) ** gamma_pos * math.log(max(p, eps))
            negative = (1 - y) * p_m ** gamma_neg * math.log(max(1 - p_m, eps))
            total += positive + negative
    batch, classes = len(logits), len(logits[0])
    scale = {"sum": 1.0, "mean": 1.0 / (batch * classes), "q2l": 1000.0 / batch / classes}[reduction]
    return -total * scale


def autograd_reference(x, y, gamma_pos, gamma_neg, clip, eps, detach_weight):
    """The same formula on tensors, with the focal weight optionally cut from the graph."""
    p = torch.sigmoid(x)
    p_m = (p - clip).clamp(min=0) if clip > 0 else p
    w_pos, w_neg = (1 - p) ** gamma_pos, p_m ** gamma_neg
    if detach_weight:
        w_pos, w_neg = w_pos.detach(), w_neg.detach()
    loss = y * w_pos * torch.log(p.clamp(min=eps)) + (1 - y) * w_neg * torch.log((1 - p_m).clamp(min=eps))
    return -loss.sum()


@pytest.mark.parametrize("gamma_pos, gamma_neg, clip, eps, reduction, targets", [
    (0.0, 4.0, 0.05, 1e-8, "sum", HARD),
    (0.0, 2.0, 0.0, 1e-5, "q2l", HARD),
    (1.0, 4.0, 0.05, 1e-8, "mean", SOFT),
    (2.0, 1.0, 0.2, 1e-8, "sum", SOFT),
    (0.0, 0.0, 0.0, 1e-8, "mean", SOFT),
    (0.5, 3.0, 0.0, 1e-5, "q2l", SOFT),
])
def test_matches_elementwise_formula(gamma_pos, gamma_neg, clip, eps, reduction, targets):
    loss = AsymmetricLoss(gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, eps=eps, reduction=reduction)
    value = loss(torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(targets, dtype=torch.float64))
    expected = reference_loss(LOGITS, targets, gamma_pos, gamma_neg, clip, eps, reduction)
    assert value.ndim == 0
    assert value.item() == pytest.approx(expected, rel=1e-10)


def test_eps_clamps_the_log_of_saturated_probabilities():
    # sigmoid(-30) ~ 9e-14 < eps, so a positive there costs exactly -log(eps).
    loss = AsymmetricLoss(gamma_pos=0, gamma_neg=0, clip=0, eps=1e-5, reduction="sum")
    value = loss(torch.tensor([[-30.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64))
    assert value.item() == pytest.approx(-math.log(1e-5))


@pytest.mark.parametrize("detach", [True, False])
def test_gradient_follows_focal_weight_setting(detach):
    settings = dict(gamma_pos=1.0, gamma_neg=3.0, clip=0.05, eps=1e-8)
    x = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(SOFT, dtype=torch.float64)
    AsymmetricLoss(**settings, disable_torch_grad_focal_loss=detach, reduction="sum")(x, y).backward()

    expected = {}
    for flag in (True, False):
        reference_x = x.detach().clone().requires_grad_(True)
        autograd_reference(reference_x, y, **settings, detach_weight=flag).backward()
        expected[flag] = reference_x.grad
    torch.testing.assert_close(x.grad, expected[detach])
    # The two settings really are different gradients, so the check above can tell them apart.
    assert not torch.allclose(expected[True], expected[False], rtol=1e-3)


@pytest.mark.parametrize("detach", [True, False])
def test_grad_mode_is_left_as_found(detach):
    loss = AsymmetricLoss(gamma_neg=4.0, disable_torch_grad_focal_loss=detach)
    x, y = torch.tensor(LOGITS, requires_grad=True), torch.tensor(HARD)
    with torch.no_grad():
        assert not loss(x, y).requires_grad
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    assert loss(x, y).requires_grad


@pytest.mark.parametrize("detach", [True, False])
def test_half_precision_logits_give_finite_loss_and_gradients(detach):
    logits = [[20.0, -20.0, 15.0, -15.0], [-20.0, 20.0, 0.0, 9.0]]
    targets = [[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.5, 1.0]]
    x = torch.tensor(logits, dtype=torch.float16, requires_grad=True)
    loss = AsymmetricLoss(gamma_pos=0.0, gamma_neg=4.0, clip=0.05, eps=1e-8,
                          disable_torch_grad_focal_loss=detach, reduction="sum")
    value = loss(x, torch.tensor(targets, dtype=torch.float16))
    value.backward()
    assert value.dtype == torch.float32
    assert torch.isfinite(value)
    assert x.grad is not None and x.grad.dtype == torch.float16 and torch.isfinite(x.grad).all()
    assert value.item() == pytest.approx(reference_loss(logits, targets, 0.0, 4.0, 0.05, 1e-8, "sum"), rel=1e-5)


def test_q2l_reduction_is_thousand_times_the_element_mean():
    x, y = torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(HARD, dtype=torch.float64)
    settings = dict(gamma_pos=0.0, gamma_neg=2.0, clip=0.0, eps=1e-5)
    summed = AsymmetricLoss(**settings, reduction="sum")(x, y)
    mean = AsymmetricLoss(**settings, reduction="mean")(x, y)
    q2l = AsymmetricLoss(**settings, reduction="q2l")(x, y)
    batch, classes = x.shape
    assert q2l.item() == pytest.approx(summed.item() / batch / classes * 1000)
    assert q2l.item() == pytest.approx(mean.item() * 1000)


@pytest.mark.parametrize("kwargs, message", [
    ({"gamma_neg": -1}, "gamma_neg"),
    ({"gamma_pos": -0.5}, "gamma_pos"),
    ({"clip": 1.0}, "clip"),
    ({"clip": -0.1}, "clip"),
    ({"eps": 0.0}, "eps"),
    ({"gamma_neg": "4"}, "gamma_neg"),
    ({"disable_torch_grad_focal_loss": "yes"}, "disable_torch_grad_focal_loss"),
    ({"reduction": "avg"}, "sum, mean, q2l"),
])
def test_bad_arguments_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AsymmetricLoss(**kwargs)


def test_mismatched_shapes_are_reported():
    with pytest.raises(ConfigError, match=r"\(2, 3\).*\(2, 4\)"):
        AsymmetricLoss()(torch.zeros(2, 3), torch.zeros(2, 4))
