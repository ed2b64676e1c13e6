"""Registry: registration, unknown names and unknown keywords are reported with the valid ones."""
import pytest

from ppq2l.errors import ConfigError
from ppq2l.registry import Registry


def make_registry():
    registry = Registry("widget")

    @registry.register
    class ResizeWidget:
        def __init__(self, size: int, interpolation: str = "bilinear"):
            self.size, self.interpolation = size, interpolation

    @registry.register(name="Alias")
    def make_alias(scale: float = 1.0):
        return ("alias", scale)

    return registry, ResizeWidget


def test_build_constructs_with_config_and_code_keywords():
    registry, resize = make_registry()
    widget = registry.build("ResizeWidget", {"size": 7})
    assert isinstance(widget, resize) and widget.size == 7 and widget.interpolation == "bilinear"
    assert registry.build("Alias", {}, scale=2.0) == ("alias", 2.0)
    assert registry.names() == ["Alias", "ResizeWidget"]


def test_unknown_name_lists_registered_names_and_suggests():
    registry, _ = make_registry()
    with pytest.raises(ConfigError) as info:
        registry.build("ResizeWidgt", {}, where="DataLoader.Train.dataset.transform_ops.1")
    message = str(info.value)
    assert "DataLoader.Train.dataset.transform_ops.1" in message
    assert "'ResizeWidgt'" in message and "Did you mean 'ResizeWidget'" in message
    assert "Alias, ResizeWidget" in message


def test_unknown_keyword_lists_accepted_ones():
    registry, _ = make_registry()
    with pytest.raises(ConfigError) as info:
        registry.build("ResizeWidget", {"size": 3, "interpolaton": "nearest"}, where="Infer")
    message = str(info.value)
    assert "'interpolaton'" in message and "Did you mean 'interpolation'" in message
    assert "Accepted: size, interpolation" in message


def test_registering_two_things_under_one_name_fails():
    registry, _ = make_registry()
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(lambda: None, name="Alias")
