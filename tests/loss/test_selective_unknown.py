"""`unknown: selective` (the class-aware selective loss): exact against a per-element reference
written here from the rule (classes whose prior is above the threshold lose their unknown entries,
so do the likelihood_topk x B most likely unknown entries of the batch, the rest are negatives with
their own focal exponent); equal to `ignore` and `negative` in the limiting settings; the prior
estimated from the dataset's known labels; options refused with one clear error; float16 finite."""
import math

import numpy as np
import pytest
import torch

from ppq2l.data.list_dataset import MultiLabelListDataset
from ppq2l.engine.evaluator import check_unknown_labels
from ppq2l.errors import ConfigError
from ppq2l.loss import AsymmetricLoss, BCEWithLogitsLoss, build_loss

# distinct logits, so the ranking of the unknown entries has no ties
LOGITS = [[2.0, -1.0, 0.3, -4.0, 1.1], [-0.5, 3.5, -2.2, 0.05, 0.7], [1.2, -0.1, 6.0, -7.5, -0.3]]
TARGETS = [[1, -1, 1, 0, -1], [-1, 1, -1, -1, 0], [1, 0, -1, -1, -1]]
PRIOR = [0.1, 0.6, 0.2, 0.45, 0.05]


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def asl_element(x, y, gamma_pos, gamma_neg, clip, eps):
    p = sigmoid(x)
    p_m = max(p - clip, 0.0) if clip > 0 else p
    return -(y * (1 - p) ** gamma_pos * math.log(max(p, eps))
             + (1 - y) * p_m ** gamma_neg * math.log(max(1 - p_m, eps)))


def bce_element(x, y, gamma_pos, gamma_neg, clip, eps):
    return -(y * math.log(sigmoid(x)) + (1 - y) * math.log(1 - sigmoid(x)))


def reference(element, topk, threshold, prior, gamma_neg, gamma_unknown, reduction, **asl):
    """Sum of the per-element loss over the entries the rule scores, and their count."""
    unknown = [(x, row, column) for row, (xs, ys) in enumerate(zip(LOGITS, TARGETS))
               for column, (x, y) in enumerate(zip(xs, ys)) if y < 0]
    likely = {(row, column) for _, row, column in sorted(unknown, reverse=True)[:topk * len(LOGITS)]}
    total, count = 0.0, 0
    for row, (xs, ys) in enumerate(zip(LOGITS, TARGETS)):
        for column, (x, y) in enumerate(zip(xs, ys)):
            if y >= 0:
                total += element(x, y, gamma_neg=gamma_neg, **asl)
            elif (row, column) in likely or (prior is not None and threshold is not None
                                              and prior[column] > threshold):
                continue
            else:
                total += element(x, 0, gamma_neg=gamma_unknown, **asl)
            count += 1
    return {"sum": total, "mean": total / count, "q2l": total / count * 1000}[reduction]


SETTINGS = [(0, 0.3, PRIOR), (1, 0.3, PRIOR), (2, None, PRIOR), (1, 0.5, None), (3, 0.0, PRIOR), (2, 0.15, PRIOR)]


@pytest.mark.parametrize("reduction", ["sum", "mean", "q2l"])
@pytest.mark.parametrize("topk, threshold, prior", SETTINGS)
@pytest.mark.parametrize("gamma_neg, gamma_unknown, clip", [(2.0, 4.0, 0.0), (4.0, 0.0, 0.05), (1.0, 1.0, 0.05)])
def test_asl_selective_matches_the_rule_entry_by_entry(reduction, topk, threshold, prior, gamma_neg,
                                                       gamma_unknown, clip):
    loss = AsymmetricLoss(gamma_pos=1.0, gamma_neg=gamma_neg, clip=clip, eps=1e-8, reduction=reduction,
                          unknown="selective", selective={"likelihood_topk": topk, "prior_threshold": threshold,
                                                          "prior": prior, "gamma_unknown": gamma_unknown})
    value = loss(torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(TARGETS, dtype=torch.int8))
    expected = reference(asl_element, topk, threshold, prior, gamma_neg, gamma_unknown, reduction,
                         gamma_pos=1.0, clip=clip, eps=1e-8)
    assert value.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("topk, threshold, prior", SETTINGS)
def test_bce_selective_matches_the_rule_entry_by_entry(reduction, topk, threshold, prior):
    loss = BCEWithLogitsLoss(reduction=reduction, unknown="selective",
                             selective={"likelihood_topk": topk, "prior_threshold": threshold, "prior": prior})
    value = loss(torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(TARGETS, dtype=torch.float64))
    expected = reference(bce_element, topk, threshold, prior, 0.0, 0.0, reduction, gamma_pos=0.0, clip=0.0, eps=0.0)
    assert value.item() == pytest.approx(expected, rel=1e-10)


def test_the_top_k_is_over_the_batch_not_per_image():
    # one image holds the three most likely unknown entries: with K=1 and B=3 all three are left out
    logits = torch.tensor([[5.0, 4.0, 3.0], [-1.0, -2.0, 0.0], [-3.0, 0.5, 1.0]])
    targets = torch.tensor([[-1, -1, -1], [-1, -1, 0], [-1, 1, 0]])
    loss = BCEWithLogitsLoss(reduction="sum", unknown="selective",
                             selective={"likelihood_topk": 1, "prior": None})
    scored = [(-1.0, 0), (-2.0, 0), (0.0, 0), (-3.0, 0), (0.5, 1), (1.0, 0)]
    assert loss(logits, targets).item() == pytest.approx(sum(
        -math.log(sigmoid(x) if y else 1 - sigmoid(x)) for x, y in scored), rel=1e-6)


@pytest.mark.parametrize("make", [
    lambda unknown, **options: AsymmetricLoss(gamma_neg=2.0, clip=0.05, reduction="mean", unknown=unknown,
                                              **options),
    lambda unknown, **options: BCEWithLogitsLoss(unknown=unknown, **options)])
def test_limiting_settings_equal_ignore_and_negative(make):
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    targets = torch.tensor(np.random.default_rng(0).integers(-1, 2, (6, 5)))
    gamma = {"gamma_unknown": 2.0} if isinstance(make("ignore"), AsymmetricLoss) else {}
    ignore, negative = make("ignore")(logits, targets), make("negative")(logits, targets)
    assert ignore.item() != pytest.approx(negative.item())
    nothing_left_out = make("selective", selective={"likelihood_topk": 0, "prior": None, **gamma})
    every_class_frequent = make("selective", selective={"likelihood_topk": 0, "prior_threshold": 0.0,
                                                        "prior": [0.1] * 5, **gamma})
    all_most_likely = make("selective", selective={"likelihood_topk": 5, "prior": None, **gamma})
    assert nothing_left_out(logits, targets).item() == pytest.approx(negative.item(), rel=1e-12)
    assert every_class_frequent(logits, targets).item() == pytest.approx(ignore.item(), rel=1e-12)
    assert all_most_likely(logits, targets).item() == pytest.approx(ignore.item(), rel=1e-12)


def test_float16_stays_finite_and_left_out_entries_get_no_gradient():
    logits = torch.tensor([[20.0, -20.0, 15.0, 3.0], [-20.0, 20.0, 0.0, -9.0]], dtype=torch.float16,
                          requires_grad=True)
    targets = torch.tensor([[1, -1, -1, 0], [-1, -1, 1, -1]], dtype=torch.int8)
    loss = AsymmetricLoss(gamma_neg=4.0, clip=0.05, reduction="mean", unknown="selective",
                          selective={"likelihood_topk": 1, "prior": None, "gamma_unknown": 4.0})
    value = loss(logits, targets)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value) and torch.isfinite(logits.grad).all()
    # the two most likely unknown entries (15 and 20) are left out; -20, -9 and -20 are negatives
    grad = logits.grad.float()
    assert grad[0, 2] == 0 and grad[1, 1] == 0
    all_unknown = loss(logits, torch.full((2, 4), -1, dtype=torch.int8))
    assert torch.isfinite(all_unknown)


def list_loader(tmp_path, rows):
    import cv2
    names = [f"{n}.png" for n in range(len(rows))]
    for name in names:
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "list.txt").write_text("".join(f"{name}\t{row}\n" for name, row in zip(names, rows)))
    ops = [{"DecodeImage": None}, {"ResizeImage": {"size": 8}}, {"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}]

    class Loader:
        dataset = MultiLabelListDataset(tmp_path, tmp_path / "list.txt", ops, 3)

    return Loader()


def test_prior_labels_is_the_share_of_positives_among_the_known_labels(tmp_path):
    loader = list_loader(tmp_path, ["1,-1,0", "1,1,-1", "0,-1,-1", "-1,0,-1"])
    loss = build_loss([{"AsymmetricLoss": {"unknown": "selective", "clip": 0.0, "reduction": "mean",
                                           "selective": {"likelihood_topk": 0, "prior_threshold": 0.6}}},
                       {"BCEWithLogitsLoss": {"unknown": "ignore"}}])
    logits, targets = torch.zeros(2, 3), torch.tensor([[-1, -1, -1], [0, 1, 0]])
    with pytest.raises(ConfigError, match="`prior: labels` is estimated from the dataset when a run is built"):
        loss(logits, targets)
    check_unknown_labels(loss, loader, "DataLoader.Train.dataset")
    prior = loss.components["AsymmetricLoss"].prior
    assert prior.tolist() == pytest.approx([2 / 3, 1 / 2, 0.0])  # class 2: no known label
    # class 0 (2/3 > 0.6) loses its unknown entry; classes 1 and 2 score theirs as negatives. Every
    # logit is 0 (p = 1/2): a negative costs log(2) / 2^4 (gamma_neg and gamma_unknown 4), the positive log(2)
    selective = loss.components["AsymmetricLoss"](logits, targets).item()
    assert selective == pytest.approx((4 / 16 + 1) * math.log(2) / 5)


@pytest.mark.parametrize("loss, options, message", [
    (AsymmetricLoss, {"likelihood_top_k": 5}, r"AsymmetricLoss.selective.likelihood_top_k: unknown key. "
                                              r"Did you mean 'likelihood_topk'\?"),
    (AsymmetricLoss, {"likelihood_topk": -1}, "likelihood_topk must be an integer >= 0"),
    (AsymmetricLoss, {"likelihood_topk": 2.5}, "likelihood_topk must be an integer >= 0"),
    (AsymmetricLoss, {"prior_threshold": 1.5}, "prior_threshold must be a number from 0 to 1"),
    (AsymmetricLoss, {"prior": "counts"}, "prior must be `labels`"),
    (AsymmetricLoss, {"prior": [0.2, 1.2]}, r"prior must be a list of one or more numbers from 0 to 1"),
    (AsymmetricLoss, {"gamma_unknown": -1}, "gamma_unknown must be a finite number >= 0"),
    (AsymmetricLoss, [5, 0.5], "expected a mapping with keys likelihood_topk"),
    (BCEWithLogitsLoss, {"gamma_unknown": 2}, r"BCEWithLogitsLoss.selective.gamma_unknown: unknown key"),
])
def test_bad_options_are_one_clear_error(loss, options, message):
    with pytest.raises(ConfigError, match=message):
        loss(unknown="selective", selective=options)


def test_selective_options_need_selective_and_the_prior_needs_every_class():
    with pytest.raises(ConfigError, match="selective options apply only with `unknown: selective`"):
        AsymmetricLoss(unknown="ignore", selective={"likelihood_topk": 1})
    loss = BCEWithLogitsLoss(unknown="selective", selective={"prior": [0.1, 0.2]})
    with pytest.raises(ConfigError, match="selective prior has 2 values but the model predicts 3 classes"):
        loss(torch.zeros(2, 3), torch.full((2, 3), -1))
    defaults = AsymmetricLoss(unknown="selective").selective
    assert (defaults.likelihood_topk, defaults.prior_threshold, defaults.prior, defaults.gamma_unknown) == \
        (5, 0.5, "labels", 4.0)
