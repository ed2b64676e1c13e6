"""Evaluation computes in float32 even when training autocasts (PaddleClas's AMP.use_fp16_test:
False); AMP.use_fp16_test: True evaluates under the training autocast."""
import torch
from torch import nn

from ppq2l.config import get_config
from ppq2l.engine.evaluator import predict_scores
from ppq2l.engine.runtime import Precision

from conftest import DEMO_CONFIG

CPU = torch.device("cpu")


def model_and_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 64), nn.ReLU(), nn.Linear(64, 5))
    return model, [(torch.randn(6, 3, 4, 4), torch.zeros(6, 5)) for _ in range(2)]


def test_evaluation_is_float32_unless_use_fp16_test():
    model, batches = model_and_batches()
    with torch.no_grad():
        exact = torch.cat([torch.sigmoid(model(images)) for images, _ in batches]).numpy()
    amp = {"dtype": "bfloat16", "init_scale": 65536.0, "use_dynamic_loss_scaling": True}
    default = Precision({**amp, "use_fp16_test": False}, CPU)
    assert default.enabled  # training autocasts ...
    scores = predict_scores(model, batches, CPU, default)[0]
    assert (scores == exact).all()  # ... evaluation does not
    mixed = predict_scores(model, batches, CPU, Precision({**amp, "use_fp16_test": True}, CPU))[0]
    assert not (mixed == exact).all()  # bfloat16 matrix products round differently
    assert abs(mixed - exact).max() < 2e-2
    assert default.describe() == "bfloat16 (evaluation float32)"


def test_use_fp16_test_is_an_amp_key_that_defaults_to_false():
    config = get_config(DEMO_CONFIG, ["AMP={dtype: bfloat16}"])
    assert config["AMP"]["use_fp16_test"] is False
    assert get_config(DEMO_CONFIG, ["AMP={dtype: bfloat16, use_fp16_test: true}"])["AMP"]["use_fp16_test"]
