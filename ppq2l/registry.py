"""One registry per kind of component: a decorator registers a class (or function) under its own
name, the name configs use, and the registry builds both shapes a config gives components in:
a `{name: X, <keywords>}` mapping and a `- X: {<keywords>}` list, naming what is wrong when an
entry does not fit."""
from __future__ import annotations

import inspect
from typing import Any, Callable

from ppq2l.checks import closest, did_you_mean  # noqa: F401 - ppq2l/data imports closest from here
from ppq2l.errors import ConfigError

LIST_ENTRY_SHAPE = "a one-key mapping `- ClassName: {keyword: value}`"


class Registry:
    """A named table of constructors (classes or functions) of one kind, filled by `register`."""

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or (kind + "es" if kind.endswith("s") else kind + "s")
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, obj: Callable[..., Any] | None = None, *, name: str | None = None):
        """Register `obj` under its own name: `@REG.register`. `@REG.register(name="Alias")` is
        only for a name PaddleClas spells differently."""

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

    def __contains__(self, name: Any) -> bool:
        return isinstance(name, str) and name in self._entries

    def get(self, name: str, where: str = "") -> Callable[..., Any]:
        """Return the constructor registered as `name`, or raise a ConfigError listing the names."""
        if name not in self:
            place = f"{where}: " if where else ""
            raise ConfigError(f"{place}unknown {self.kind} {name!r}.{did_you_mean(name, self._entries)} "
                              f"Registered {self.plural}: {', '.join(self.names())}")
        return self._entries[name]

    def build(self, name: str, kwargs: dict[str, Any] | None = None, where: str = "",
              *args: Any, **extra: Any) -> Any:
        """Construct `name` with the config keywords `kwargs` plus code-supplied `args` and `extra`.
        Keywords the constructor does not accept, or required ones that are missing, are
        reported with the accepted ones; its own ConfigErrors are located as `where name: ...`."""
        target = self.get(name, where)
        label = f"{where or self.kind} {name}"
        kwargs = dict(kwargs or {})
        check_keywords(target, kwargs, label)
        kwargs.update(extra)
        check_required(target, args, kwargs, label)
        try:
            return target(*args, **kwargs)
        except ConfigError as error:
            raise located(error, where, name) from error

    def parse_mapping(self, config: Any, where: str, example: str = "",
                      registered_only: bool = True) -> tuple[str, dict[str, Any]]:
        """Split a `{name: X, <keywords>}` mapping into (X, keywords); X must be registered
        unless `registered_only` is false (the caller builds other names itself)."""
        if not isinstance(config, dict) or not isinstance(config.get("name"), str) \
                or not config["name"]:
            like = f", e.g. {example}" if example else ""
            raise ConfigError(f"{where}: expected a mapping with a name{like}; registered "
                              f"{self.plural}: {', '.join(self.names())}; got {config!r}")
        kwargs = dict(config)
        name = kwargs.pop("name")
        if registered_only:
            self.get(name, where)
        return name, kwargs

    def build_mapping(self, config: Any, where: str, *args: Any, example: str = "",
                      **extra: Any) -> Any:
        """Build the component a `{name: X, <keywords>}` mapping describes (see `build`)."""
        name, kwargs = self.parse_mapping(config, where, example)
        return self.build(name, kwargs, where, *args, **extra)

    def parse_list(self, entries: Any, where: str, shape: str = LIST_ENTRY_SHAPE,
                   allow_empty: bool = True) -> list[tuple[str, str, dict[str, Any]]]:
        """(`where.<index>`, name, keywords) of each `- Name: {keywords}` entry of a list; the
        keywords may be null. A missing list (None) is empty."""
        if entries is None and allow_empty:
            return []
        if not isinstance(entries, list) or not (entries or allow_empty):
            size = "a list" if allow_empty else "a non-empty list"
            raise ConfigError(f"{where}: expected {size} of {self.plural}, each {shape}; got "
                              f"{entries!r}")
        parsed = []
        for index, entry in enumerate(entries):
            place = f"{where}.{index}"
            name, kwargs = parse_component_entry(entry, place, shape)
            self.get(name, place)
            parsed.append((place, name, kwargs))
        return parsed

    def build_list(self, entries: Any, where: str, shape: str = LIST_ENTRY_SHAPE,
                   allow_empty: bool = True) -> list[Any]:
        """Build every `- Name: {keywords}` entry of a list; errors name `where.<index> Name`."""
        return [self.build(name, kwargs, place)
                for place, name, kwargs in self.parse_list(entries, where, shape, allow_empty)]


def located(error: ConfigError, where: str, name: str = "") -> ConfigError:
    """`error` with its message placed as `where name: ...`, unless it already starts at `where`
    (a nested component's error) or there is no place to add."""
    message = str(error)
    if not where or message.startswith(where):
        return error
    if name and message.startswith(f"{name}: "):  # the constructor named itself: say it once
        message = message[len(name) + 2:]
    return type(error)(f"{where} {name}: {message}" if name else f"{where}: {message}")


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
        details = " ".join(f"unknown keyword {key!r}.{did_you_mean(key, names)}" for key in unknown)
        raise ConfigError(f"{where}: {details} Accepted: {', '.join(names)}")


def check_required(target: Callable[..., Any], args: tuple, kwargs: dict[str, Any],
                   where: str) -> None:
    """Raise a ConfigError naming the parameters without a default that neither `args` nor
    `kwargs` supply."""
    signature = inspect.signature(target)
    try:
        supplied = signature.bind_partial(*args, **kwargs).arguments
    except TypeError:
        return  # the call itself reports what does not bind
    missing = [parameter.name for parameter in signature.parameters.values()
               if parameter.default is inspect.Parameter.empty and parameter.name not in supplied
               and parameter.kind not in (inspect.Parameter.VAR_POSITIONAL,
                                          inspect.Parameter.VAR_KEYWORD)]
    if missing:
        raise ConfigError(f"{where} needs {', '.join(missing)}")


def parse_component_entry(entry: Any, where: str, shape: str = LIST_ENTRY_SHAPE
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
LOSSES = Registry("loss")
METRICS = Registry("metric")
OPTIMIZERS = Registry("optimizer")
LR_SCHEDULERS = Registry("lr scheduler")
DATASETS = Registry("dataset")
TRANSFORMS = Registry("transform")
BATCH_TRANSFORMS = Registry("batch transform")
POSTPROCESSES = Registry("postprocess")
