"""Checks of config values and the "did you mean" hint for unknown names. Each failed check is
one ConfigError that names the key (after `where`, when given) and what would be right.
Standard library only: the torch-free deploy and postprocess code uses it too."""
from __future__ import annotations

import difflib
import math
import numbers
from typing import Any, Iterable, Sequence

from ppq2l.errors import ConfigError


def closest(name: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """The candidates that look most like `name`; a match that differs only in case counts."""
    candidates = [str(candidate) for candidate in candidates]
    found = difflib.get_close_matches(str(name), candidates, n=limit, cutoff=0.5)
    lowered = {candidate.lower(): candidate for candidate in candidates}
    if not found and str(name).lower() in lowered:
        found = [lowered[str(name).lower()]]
    return found


def did_you_mean(name: Any, candidates: Iterable[str], limit: int = 3) -> str:
    """` Did you mean 'a' or 'b'?` for the candidates closest to `name`, or "" when none is."""
    near = [repr(item) for item in closest(str(name), candidates, limit)]
    if not near:
        return ""
    listed = near[0] if len(near) == 1 else f"{', '.join(near[:-1])} or {near[-1]}"
    return f" Did you mean {listed}?"


def is_number(value: Any) -> bool:
    """Whether `value` is a real number; booleans are not, although Python counts them as ints."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}" if where else message)


def _why(why: str) -> str:
    return f" ({why})" if why else ""


def describe_range(minimum: float | None = None, maximum: float | None = None,
                   above: float | None = None, below: float | None = None) -> str:
    """The bounds in words: ">= 0", "> 0", "from 0 to 1", "in [0, 1)"; "" without bounds."""
    low = (minimum, "[") if minimum is not None else (above, "(") if above is not None else None
    high = (maximum, "]") if maximum is not None else (below, ")") if below is not None else None
    if low and high:
        if low[1] == "[" and high[1] == "]":
            return f"from {low[0]:g} to {high[0]:g}"
        return f"in {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
    if low:
        return f"{'>=' if low[1] == '[' else '>'} {low[0]:g}"
    if high:
        return f"{'<=' if high[1] == ']' else '<'} {high[0]:g}"
    return ""


def _in_range(value: float, minimum: float | None, maximum: float | None, above: float | None,
              below: float | None) -> bool:
    return ((minimum is None or value >= minimum) and (maximum is None or value <= maximum)
            and (above is None or value > above) and (below is None or value < below))


def _what_number(integer: bool, bounds: tuple, plural: bool = False) -> str:
    minimum, maximum, above, below = bounds
    if integer:
        noun = "integers" if plural else "integer"
        if minimum == 1 and maximum is None and above is None and below is None:
            return f"positive {noun}" if plural else f"a positive {noun}"
        text = f"{noun} {describe_range(*bounds)}".rstrip()
        return text if plural else f"an {text}"
    noun = "numbers" if plural else "number"
    closed = (minimum is not None or above is not None) and (maximum is not None or below is not None)
    text = f"{noun if closed else 'finite ' + noun} {describe_range(*bounds)}".rstrip()
    return text if plural else f"a {text}"


def number(value: Any, key: str, *, minimum: float | None = None, maximum: float | None = None,
           above: float | None = None, below: float | None = None, why: str = "",
           where: str = "") -> float:
    """`value` as a float: a finite number within the given bounds (`above`/`below` exclude)."""
    bounds = (minimum, maximum, above, below)
    if not is_number(value) or not math.isfinite(value) or not _in_range(value, *bounds):
        raise _fail(where, f"{key} must be {_what_number(False, bounds)}{_why(why)}, "
                           f"got {value!r}")
    return float(value)


def integer(value: Any, key: str, *, minimum: int | None = None, maximum: int | None = None,
            allow_none: bool = False, why: str = "", where: str = "") -> int | None:
    """`value` as an int within [minimum, maximum]; None passes only with `allow_none`."""
    if value is None and allow_none:
        return None
    bounds = (minimum, maximum, None, None)
    if not is_number(value) or not isinstance(value, numbers.Integral) \
            or not _in_range(value, *bounds):
        alternative = " or null" if allow_none else ""
        raise _fail(where, f"{key} must be {_what_number(True, bounds)}{alternative}{_why(why)}, "
                           f"got {value!r}")
    return int(value)


def flag(value: Any, key: str, *, where: str = "") -> bool:
    """`value` if it is a boolean (true/false in YAML)."""
    if not isinstance(value, bool):
        raise _fail(where, f"{key} must be true or false, got {value!r}")
    return value


def choice(value: Any, key: str, choices: Sequence[Any], *, where: str = "") -> Any:
    """`value` if it is one of `choices`; otherwise the error suggests the closest ones."""
    if value not in choices:
        listed = ", ".join(str(item) for item in choices)
        raise _fail(where, f"{key} must be one of {listed}, got {value!r}."
                           f"{did_you_mean(value, map(str, choices))}")
    return value


def number_list(value: Any, key: str, *, length: int | None = None, integers: bool = False,
                minimum: float | None = None, maximum: float | None = None,
                above: float | None = None, below: float | None = None, increasing: bool = False,
                example: str = "", where: str = "") -> list:
    """`value` as a list of `length` numbers (one or more when None), each within the bounds,
    strictly increasing with `increasing`; ints with `integers`, floats otherwise."""
    bounds = (minimum, maximum, above, below)
    valid = isinstance(value, (list, tuple)) and len(value) > 0 \
        and (length is None or len(value) == length) \
        and all(is_number(item) and math.isfinite(item) and _in_range(item, *bounds)
                and (not integers or isinstance(item, numbers.Integral)) for item in value) \
        and (not increasing or all(a < b for a, b in zip(value, value[1:])))
    if not valid:
        count = "one or more" if length is None else str(length)
        order = " increasing" if increasing else ""
        like = f", like {example}" if example else ""
        raise _fail(where, f"{key} must be a list of {count}{order} "
                           f"{_what_number(integers, bounds, plural=True)}{like}, got {value!r}")
    return [int(item) if integers else float(item) for item in value]


def check_keys(mapping: Any, valid: Sequence[str], where: str) -> dict:
    """`mapping` as a dict whose keys are all in `valid`, or a ConfigError naming the first
    unknown key path with the valid keys."""
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(valid)}, got {mapping!r}")
    for key in mapping:
        if key not in valid:
            raise ConfigError(f"{where}.{key}: unknown key.{did_you_mean(key, valid)} "
                              f"Valid keys: {', '.join(valid)}")
    return dict(mapping)
