"""Unknown labels (-1) in the losses: `unknown: ignore` equals the per-element formula summed over
the known entries and divided by their count, `unknown: negative` scores them as negatives; the
gradient of an ignored entry is exactly zero, half precision stays finite, and a loss that cannot
tell unknown from negative is refused with a clear error."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from ppq2l.data.list_dataset import MultiLabelListDataset
from ppq2l.engine.evaluator import check_unknown_labels
from ppq2l.errors import ConfigError, DataError
from ppq2l.loss import AsymmetricLoss, BCEWithLogitsLoss, build_loss
from ppq2l.registry import LOSSES

LOGITS = [[2.0, -1.0, 0.3, -4.0], [-0.5, 3.5, -2.2, 0.0], [1.2, -0.1, 6.0, -7.5]]
TARGETS = [[1.0, -1.0, 1.0, 0.0], [-1.0, 1.0, -1.0, -1.0], [0.6, 0.0, -1.0, 0.2]]


def asl_element(x, y, gamma_pos, gamma_neg, clip, eps):
    p = 1.0 / (1.0 + math.exp(-x))
    p_m = max(p - clip, 0.0) if clip > 0 else p
    return -(y * (1 - p) ** gamma_pos * math.log(max(p, eps))
             + (1 - y) * p_m ** gamma_neg * math.log(max(1 - p_m, eps)))


def bce_element(x, y, pos_weight):
    p = 1.0 / (1.0 + math.exp(-x))
    return -(pos_weight * y * math.log(p) + (1 - y) * math.log(1 - p))


def masked_reference(element, unknown, reduction, scale=1.0):
    """Sum the per-element formula over the entries the mode keeps; divide by their number."""
    total, count = 0.0, 0
    for row_x, row_y in zip(LOGITS, TARGETS):
        for x, y in zip(row_x, row_y):
            if y < 0 and unknown == "ignore":
                continue
            total += element(x, max(y, 0.0))
            count += 1
    return total if reduction == "sum" else total / count * scale


@pytest.mark.parametrize("unknown", ["ignore", "negative"])
@pytest.mark.parametrize("reduction", ["sum", "mean", "q2l"])
@pytest.mark.parametrize("gamma_pos, gamma_neg, clip, eps", [(0.0, 4.0, 0.05, 1e-8), (1.0, 2.0, 0.0, 1e-5)])
def test_asl_matches_the_masked_elementwise_formula(unknown, reduction, gamma_pos, gamma_neg, clip, eps):
    loss = AsymmetricLoss(gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, eps=eps,
                          reduction=reduction, unknown=unknown)
    value = loss(torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(TARGETS, dtype=torch.float64))
    expected = masked_reference(lambda x, y: asl_element(x, y, gamma_pos, gamma_neg, clip, eps), unknown,
                                reduction, scale=1000.0 if reduction == "q2l" else 1.0)
    assert value.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("unknown", ["ignore", "negative"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_bce_matches_the_masked_elementwise_formula(unknown, reduction):
    pos_weight = [1.0, 2.0, 0.5, 3.0]
    value = BCEWithLogitsLoss(reduction=reduction, pos_weight=pos_weight, unknown=unknown)(
        torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(TARGETS, dtype=torch.float64))
    terms = [bce_element(x, max(y, 0.0), pos_weight[column])
             for row_x, row_y in zip(LOGITS, TARGETS) for column, (x, y) in enumerate(zip(row_x, row_y))
             if y >= 0 or unknown == "negative"]
    expected = sum(terms) if reduction == "sum" else sum(terms) / len(terms)
    assert len(terms) == (7 if unknown == "ignore" else 12)
    assert value.item() == pytest.approx(expected, rel=1e-10)


def test_ignored_entries_get_no_gradient_and_ignore_is_the_default():
    x = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(TARGETS, dtype=torch.float64)
    for loss in (AsymmetricLoss(gamma_neg=4.0, clip=0.0, reduction="mean"), BCEWithLogitsLoss()):
        assert loss.unknown == "ignore"
        x.grad = None
        loss(x, y).backward()
        assert torch.all(x.grad[y < 0] == 0) and torch.all(x.grad[y >= 0] != 0)


def test_int8_targets_half_precision_and_an_all_unknown_batch():
    logits = torch.tensor([[20.0, -20.0, 15.0], [-20.0, 20.0, 0.0]], dtype=torch.float16, requires_grad=True)
    targets = torch.tensor([[1, -1, 0], [-1, 0, 1]], dtype=torch.int8)
    for loss in (AsymmetricLoss(gamma_neg=4.0, clip=0.05, reduction="mean"), BCEWithLogitsLoss()):
        value = loss(logits, targets)
        value.backward()
        assert value.dtype == torch.float32 and torch.isfinite(value) and torch.isfinite(logits.grad).all()
        nothing = loss(logits, torch.full((2, 3), -1, dtype=torch.int8))
        assert nothing.item() == 0.0  # no known entry: zero, not 0/0
    with pytest.raises(ConfigError, match="unknown must be one of ignore, negative, selective, got 'skip'"):
        AsymmetricLoss(unknown="skip")


@LOSSES.register
class PlainSquaredError(nn.Module):
    """A loss that knows nothing of unknown labels (for the tests below)."""

    def forward(self, logits, targets):
        return ((torch.sigmoid(logits) - targets.float()) ** 2).mean()


def test_a_loss_without_unknown_support_refuses_unknown_targets(tmp_path):
    loss = build_loss([{"PlainSquaredError": None}, {"AsymmetricLoss": None}], where="Loss.Train")
    logits = torch.zeros(2, 3)
    loss(logits, torch.tensor([[1, 0, 0], [0, 1, 0]], dtype=torch.int8))  # complete labels are fine
    with pytest.raises(DataError, match=r"^a batch has unknown labels \(-1\), but Loss.Train PlainSquaredError "
                                        r"cannot tell them from negatives; use AsymmetricLoss"):
        loss(logits, torch.tensor([[1, -1, 0], [0, 1, 0]], dtype=torch.int8))

    # before any training: the dataset's labels are looked at when the run is built
    import cv2
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "list.txt").write_text("a.png\t1,-1,0\nb.png\t0,1,0\n")
    ops = [{"DecodeImage": None}, {"ResizeImage": {"size": 8}}, {"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}]

    class Loader:
        dataset = MultiLabelListDataset(tmp_path, tmp_path / "list.txt", ops, 3)

    with pytest.raises(DataError, match=r"^DataLoader.Train.dataset \(1 unknown labels\) has unknown labels"):
        check_unknown_labels(loss, Loader(), "DataLoader.Train.dataset")
    check_unknown_labels(build_loss([{"AsymmetricLoss": None}]), Loader(), "DataLoader.Train.dataset")
