"""Calibration policies: how a class's threshold is chosen from its precision-recall curve.

`f1` maximises the class's F1; `precision:P` takes the lowest threshold whose precision is >= P;
`recall:R` the highest threshold whose recall is >= R; `fixed:T` gives every class T. Targets are
kept as exact fractions (`0.9` is 9/10), so "precision >= 0.9" is decided in integers, never by a
rounding of 9/10."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ppq2l.checks import did_you_mean
from ppq2l.errors import ConfigError

KINDS = ("f1", "precision", "recall", "fixed")
FORMS = ("f1", "precision:P", "recall:R", "fixed:T")
# Whose threshold a class gets: its own, the one of all classes pooled, or (auto) under `f1` the
# one of the two whose held-out macro-F1 is higher, under the other policies its own.
SCOPES = ("per_class", "pooled", "auto")
# A target with more digits than this cannot change which operating point wins on any real data
# set, and the bound keeps the integer comparisons of the search within int64.
MAX_DENOMINATOR = 10 ** 6


@dataclass(frozen=True)
class Policy:
    """A parsed policy: `kind` is one of KINDS, `target` its number (None for f1)."""

    kind: str
    target: Fraction | None = None

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}:{format_fraction(self.target)}"


def format_fraction(value: Fraction) -> str:
    """The shortest decimal text of `value` that reads back as the same float (`9/10` -> `0.9`)."""
    return repr(float(value))


def _valid_forms() -> str:
    return f"valid policies: {', '.join(FORMS)} (P, R in (0, 1], T in [0, 1]; e.g. precision:0.9)"


def parse_policy(text: object, key: str = "Calibrate.policy") -> Policy:
    """The Policy written as `text`; a ConfigError naming `key` and the valid forms otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{key} must be a string, got {text!r}; {_valid_forms()}")
    kind, colon, number = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ConfigError(f"{key}: {text!r} is not a policy.{did_you_mean(kind, KINDS)} "
                          f"V{_valid_forms()[1:]}")
    if kind == "f1":
        if colon:
            raise ConfigError(f"{key}: {text!r}: f1 takes no number; {_valid_forms()}")
        return Policy("f1")
    if not colon or not number.strip():
        raise ConfigError(f"{key}: {text!r} needs a number after the colon, e.g. {kind}:"
                          f"{'0.5' if kind == 'fixed' else '0.9'}; {_valid_forms()}")
    try:
        target = Fraction(number.strip())
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{key}: {text!r}: {number.strip()!r} is not a number; "
                          f"{_valid_forms()}") from None
    target = target.limit_denominator(MAX_DENOMINATOR)
    if kind == "fixed" and not 0 <= target <= 1:
        raise ConfigError(f"{key}: {text!r}: the threshold must be from 0 to 1 (scores are "
                          f"sigmoid outputs); {_valid_forms()}")
    if kind != "fixed" and not 0 < target <= 1:
        raise ConfigError(f"{key}: {text!r}: the {kind} target must be in (0, 1]; {_valid_forms()}")
    return Policy(kind, target)
