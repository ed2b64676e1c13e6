"""The evaluation loss (Loss.Eval): computed on the logits, weighted by batch size like the
training loss, and reported beside the metrics."""
import pytest
import torch
from torch import nn

from ppq2l.engine.evaluator import build_eval_loss, format_metrics, predict_scores, with_loss
from ppq2l.engine.runtime import Precision
from ppq2l.loss import build_loss

CPU = torch.device("cpu")


def batches_and_model():
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(size, 3, 2, 2, generator=generator),
                (torch.rand(size, 5, generator=generator) > 0.5).float()) for size in (4, 4, 3)]
    torch.manual_seed(0)
    return batches, nn.Sequential(nn.Flatten(), nn.Linear(12, 5))


def test_eval_loss_of_mean_losses_equals_the_loss_of_all_logits_at_once():
    batches, model = batches_and_model()
    loss_fn = build_loss([{"AsymmetricLoss": {"reduction": "mean", "gamma_neg": 2}},
                          {"BCEWithLogitsLoss": {"weight": 0.5}}], where="Loss.Eval")
    scores, targets, loss_sum = predict_scores(model, batches, CPU, Precision(None, CPU),
                                               loss_fn=loss_fn)
    images = torch.cat([images for images, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    with torch.no_grad():
        expected = loss_fn(model(images), labels)["loss"].item()
    # Batches of 4, 4 and 3: an unweighted mean of the batch losses would differ.
    assert loss_sum / len(scores) == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(torch.from_numpy(scores), torch.sigmoid(model(images)).detach())
    assert targets.tolist() == labels.tolist()


def test_eval_loss_weights_each_batch_by_its_size_like_the_training_log():
    batches, model = batches_and_model()
    loss_fn = build_loss([{"AsymmetricLoss": {"reduction": "sum"}}], where="Loss.Eval")
    _, _, loss_sum = predict_scores(model, batches, CPU, Precision(None, CPU), loss_fn=loss_fn)
    with torch.no_grad():
        expected = sum(loss_fn(model(images), labels)["loss"].item() * len(images)
                       for images, labels in batches)
    assert loss_sum == pytest.approx(expected, rel=1e-9)


def test_without_loss_eval_there_is_no_loss():
    batches, model = batches_and_model()
    assert build_eval_loss({"Loss": {"Train": [{"AsymmetricLoss": None}]}}) is None
    assert predict_scores(model, batches, CPU, Precision(None, CPU))[2] == 0.0
    assert with_loss({"mAP": 50.0}, None) == {"mAP": 50.0}
    assert list(with_loss({"mAP": 50.0}, 0.25)) == ["loss", "mAP"]


def test_loss_eval_mistakes_name_the_section():
    from ppq2l.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^Loss\.Eval\.0 AsymmetricLoss: unknown keyword 'gama_neg'"):
        build_eval_loss({"Loss": {"Eval": [{"AsymmetricLoss": {"gama_neg": 2}}]}})
    with pytest.raises(ConfigError, match=r"^Loss\.Eval: expected a non-empty list of losses"):
        build_eval_loss({"Loss": {"Eval": []}})


def test_the_loss_is_printed_with_more_digits_than_the_percentages():
    assert format_metrics({"loss": 0.012345, "mAP": 51.234}) == "loss 0.0123  mAP 51.23"
