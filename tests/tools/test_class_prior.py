"""ppq2l-class-prior: the selective loss's prior as the paper estimates it (each class's mean score
over the training images), printed as overrides that build that loss from a config."""
import shlex

import numpy as np
import pytest

from ppq2l.calibration.scores_file import Scores, save_scores
from ppq2l.commands import class_prior
from ppq2l.config import get_config
from ppq2l.errors import ConfigError
from ppq2l.loss import build_loss

from conftest import DEMO_CONFIG, assert_user_error, run_tool


def write_scores(path, scores, targets):
    names = [f"class{index}" for index in range(scores.shape[1])]
    return save_scores(path, Scores(scores.astype(np.float32), np.asarray(targets, np.int8), [f"{i}.jpg" for i in
                                    range(len(scores))], names, {"data": "DataLoader.Eval", "list_file": "train.txt"}))


def test_the_printed_overrides_give_the_loss_the_mean_scores(tmp_path, capsys):
    rng = np.random.default_rng(0)
    scores = rng.random((30, 12))
    targets = np.where(rng.random((30, 12)) < 0.3, -1, rng.random((30, 12)) < 0.2)
    path = write_scores(tmp_path / "train_scores.npz", scores, targets)
    result = class_prior.main(["--scores", str(path)])
    expected = scores.astype(np.float32).astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(result["prior"], expected, atol=5e-5)  # four digits
    known = targets >= 0
    np.testing.assert_allclose(result["label_shares"], (targets == 1).sum(0) / known.sum(0))
    words = shlex.split(capsys.readouterr().out)
    overrides = [words[index + 1] for index, word in enumerate(words) if word == "-o"]
    config = get_config(DEMO_CONFIG, overrides)
    loss = build_loss(config["Loss"]["Train"], where="Loss.Train")
    priors = [module.prior for module in loss.modules() if getattr(module, "prior", None) is not None]
    assert len(priors) == 1  # the one AsymmetricLoss of the demo config, now selective with this prior
    np.testing.assert_allclose(priors[0].numpy(), result["prior"], atol=1e-6)


def test_a_missing_scores_file_is_one_error_line(tmp_path):
    result = run_tool("tools/class_prior.py", "--scores", tmp_path / "none.npz")
    assert_user_error(result, "--scores", "none.npz does not exist")


def test_a_negative_loss_index_is_refused(tmp_path):
    path = write_scores(tmp_path / "s.npz", np.full((2, 3), 0.5), np.zeros((2, 3)))
    with pytest.raises(ConfigError, match="--loss_index must be 0 or more"):
        class_prior.main(["--scores", str(path), "--loss_index", "-1"])
