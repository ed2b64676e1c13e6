"""One registry per kind of component: a decorator registers a class where it is defined, and
`build` turns a YAML entry into an instance, naming what is wrong when the entry does not fit."""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Iterable

from ppq2l.errors import ConfigError


def closest(name: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """Return the candidates that look most like `name` (for "did you mean" hints)."""
    candidates = list(candidates)
    found = difflib.get_close_matches(name, candidates, n=limit, cutoff=0.5)
    lowered = {c.lower(): c for c in candidates}
    if not found and name.lower() in lowered:
        found = [lowered[name.lower()]]
    return found


def _hint(name: str, candidates: Iterable[str]) -> str:
    near = closest(name, candidates)
    return f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""


class Registry:
    """A named table of constructors (classes or functions) of one kind, filled by `register`."""

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or (kind + "es" if kind.endswith("s") else kind + "s")
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, obj: Callable[..., Any] | None = None, *, name: str | None = None):
        """Register `obj` under its own name (or `name`); usable as `@REG.register` or
        `@REG.register(name="Alias")`."""

        def add(target: Callable[..., Any]) -> Callable[..., Any]:
            key = name or target.__name__
            if key in self._entries and self._entries[key] is not target:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = target
            return target

        return add(obj) if obj is not None else add

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str, where: str = "") -> Callable[..., Any]:
        """Return the constructor registered as `name`, or raise a ConfigError listing the names."""
        if not isinstance(name, str) or name not in self._entries:
            place = f"{where}: " if where else ""
            raise ConfigError(
                f"{place}unknown {self.kind} {name!r}.{_hint(str(name), self._entries)} "
                f"Registered {self.plural}: {', '.join(self.names())}")
        return self._entries[name]

    def build(self, name: str, kwargs: dict[str, Any] | None = None, where: str = "",
              **extra: Any) -> Any:
        """Construct `name` with the config keywords `kwargs` plus code-supplied `extra` ones.
        Keywords the constructor does not accept are reported with the accepted ones."""
        target = self.get(name, where)
        kwargs = dict(kwargs or {})
        check_keywords(target, kwargs, f"{where or self.kind} {name}")
        kwargs.update(extra)
        return target(**kwargs)


def accepted_keywords(target: Callable[..., Any]) -> tuple[list[str], bool]:
    """Keyword names `target` accepts and whether it takes **kwargs."""
    signature = inspect.signature(target)
    names, takes_any = [], False
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            takes_any = True
        elif parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                inspect.Parameter.KEYWORD_ONLY) and parameter.name != "self":
            names.append(parameter.name)
    return names, takes_any


def check_keywords(target: Callable[..., Any], kwargs: dict[str, Any], where: str) -> None:
    """Raise a ConfigError naming each keyword in `kwargs` that `target` does not accept."""
    names, takes_any = accepted_keywords(target)
    if takes_any:
        return
    unknown = [key for key in kwargs if key not in names]
    if unknown:
        details = " ".join(f"unknown keyword {key!r}.{_hint(key, names)}" for key in unknown)
        raise ConfigError(f"{where}: {details} Accepted: {', '.join(names)}")


def parse_component_entry(entry: Any, where: str,
                          shape: str = "a one-key mapping `- ClassName: {keyword: value}`"
                          ) -> tuple[str, dict[str, Any]]:
    """Split one `- ClassName: {kwargs}` list entry of a config into (name, kwargs); kwargs may be
    null. Transforms, losses and metrics are all listed this way."""
    if not isinstance(entry, dict) or len(entry) != 1:
        raise ConfigError(f"{where}: expected {shape}, got {entry!r}")
    (name, kwargs), = entry.items()
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{where}: the keywords of {name!r} must be a mapping or empty, got "
                          f"{kwargs!r}; expected {shape}")
    return name, dict(kwargs)


# One registry per kind of component. Modules register into these at their definitions.
ARCHS = Registry("architecture")
BACKBONES = Registry("backbone")
HEADS = Registry("head")
LOSSES = Registry("loss")
METRICS = Registry("metric")
OPTIMIZERS = Registry("optimizer")
LR_SCHEDULERS = Registry("lr scheduler")
DATASETS = Registry("dataset")
TRANSFORMS = Registry("transform")
BATCH_TRANSFORMS = Registry("batch transform")
POSTPROCESSES = Registry("postprocess")
