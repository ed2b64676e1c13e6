"""The shared value checks: what passes, what each refusal says, and the did-you-mean hint."""
import math

import numpy as np
import pytest

from ppq2l.checks import (
    choice,
    closest,
    describe_range,
    did_you_mean,
    flag,
    integer,
    is_number,
    number,
    number_list,
)
from ppq2l.errors import ConfigError


def test_did_you_mean_suggests_close_names_and_case_variants():
    assert did_you_mean("adamw", ["Adam", "AdamW", "SGD"]) == " Did you mean 'Adam' or 'AdamW'?"
    assert closest("SGD", ["sgd", "Adam"]) == ["sgd"]  # only the case differs
    assert did_you_mean("Zebra", ["Adam", "SGD"]) == ""


def test_booleans_are_not_numbers():
    assert is_number(3) and is_number(2.5) and is_number(np.float32(1.0))
    assert not is_number(True) and not is_number("1") and not is_number(None)


@pytest.mark.parametrize("bounds, words", [
    ({"minimum": 0}, ">= 0"), ({"above": 0}, "> 0"), ({"maximum": 1}, "<= 1"),
    ({"minimum": 0, "maximum": 1}, "from 0 to 1"), ({"minimum": 0, "below": 1}, "in [0, 1)"),
    ({"above": 0, "below": 1}, "in (0, 1)"), ({}, ""),
])
def test_ranges_in_words(bounds, words):
    assert describe_range(**bounds) == words


def test_number_returns_a_float_within_bounds_and_names_the_key_otherwise():
    assert number(2, "gamma", above=0) == 2.0 and isinstance(number(2, "gamma"), float)
    assert number(0.0, "clip", minimum=0, below=1) == 0.0
    for bad in (0, -1.0, math.inf, math.nan, True, "0.1", None):
        with pytest.raises(ConfigError, match=r"^AsymmetricLoss: eps must be a finite number > 0, got "):
            number(bad, "eps", above=0, where="AsymmetricLoss")
    with pytest.raises(ConfigError, match=r"^threshold must be a number from 0 to 1 \(compared with "
                                          r"sigmoid scores\), got 1\.5$"):
        number(1.5, "threshold", minimum=0, maximum=1, why="compared with sigmoid scores")


def test_integer_bounds_none_and_bools():
    assert integer(3, "top_k", minimum=1) == 3 and integer(None, "top_k", allow_none=True) is None
    with pytest.raises(ConfigError, match=r"^top_k must be a positive integer or null, got True$"):
        integer(True, "top_k", minimum=1, allow_none=True)
    with pytest.raises(ConfigError, match=r"frozen_stages must be an integer from -1 to 4, got 5"):
        integer(5, "frozen_stages", minimum=-1, maximum=4)
    with pytest.raises(ConfigError, match=r"Global\.epochs must be an integer, got 2\.0"):
        integer(2.0, "Global.epochs")
    with pytest.raises(ConfigError, match="num_layers must be an integer >= 0, got -1"):
        integer(-1, "num_layers", minimum=0)


def test_flag_accepts_only_booleans():
    assert flag(False, "amsgrad") is False
    for bad in (0, 1, "yes", None):
        with pytest.raises(ConfigError, match=r"^SGD: nesterov must be true or false, got "):
            flag(bad, "nesterov", where="SGD")


def test_choice_names_the_valid_values_and_the_closest():
    assert choice("voc", "map_type", ("integral", "voc")) == "voc"
    with pytest.raises(ConfigError, match=r"^MultiLabelMAP: map_type must be one of integral, voc, "
                                          r"11point, got '11points'\. Did you mean '11point'\?$"):
        choice("11points", "map_type", ("integral", "voc", "11point"), where="MultiLabelMAP")
    with pytest.raises(ConfigError, match=r"^reduction must be one of sum, mean, got \['sum'\]\. Did you "
                                          r"mean 'sum'\?$"):
        choice(["sum"], "reduction", ("sum", "mean"))


def test_number_list_length_items_order_and_example():
    assert number_list((0.9, 0.99), "betas", length=2, minimum=0, below=1) == [0.9, 0.99]
    assert number_list([3, 8, 8], "image_shape", length=3, integers=True, minimum=1) == [3, 8, 8]
    for bad in ([0.9], [0.9, 1.0], "0.9,0.99", [], [0.9, True], [0.9, math.nan]):
        with pytest.raises(ConfigError, match=r"^AdamW: betas must be a list of 2 numbers in \[0, 1\), "
                                              r"like \[0\.9, 0\.999\], got "):
            number_list(bad, "betas", length=2, minimum=0, below=1, example="[0.9, 0.999]",
                        where="AdamW")
    with pytest.raises(ConfigError, match="must be a list of one or more increasing positive integers"):
        number_list([2, 2], "milestones", integers=True, minimum=1, increasing=True)
    with pytest.raises(ConfigError, match="image_shape must be a list of 3 positive integers"):
        number_list([3, 8.0, 8], "image_shape", length=3, integers=True, minimum=1)


def test_several_suggestions_read_as_a_list():
    hint = did_you_mean("resnet5", ["resnet50", "resnet18", "resnet34", "vit_base"], limit=3)
    assert hint.startswith(" Did you mean 'resnet50', ") and hint.count(" or ") == 1
    assert hint.endswith("?")
