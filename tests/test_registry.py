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


def make_layer_registry():
    registry = Registry("layer")

    @registry.register
    class Scale:
        def __init__(self, factor: float, *, bias: float = 0.0):
            if factor <= 0:
                raise ConfigError(f"Scale: factor must be > 0, got {factor}")
            self.factor, self.bias = factor, bias

    @registry.register
    class Shift:
        def __init__(self, inputs: int, /, amount: float = 1.0):
            self.inputs, self.amount = inputs, amount

    return registry, Scale, Shift


def test_build_mapping_passes_code_arguments_and_config_keywords():
    registry, scale, shift = make_layer_registry()
    built = registry.build_mapping({"name": "Shift", "amount": 2.0}, "Model.layer", 7)
    assert isinstance(built, shift) and (built.inputs, built.amount) == (7, 2.0)
    built = registry.build_mapping({"name": "Scale", "factor": 3}, "Model.layer", bias=1.0)
    assert isinstance(built, scale) and (built.factor, built.bias) == (3, 1.0)


@pytest.mark.parametrize("config, message", [
    ({"factor": 2}, r"^Model\.layer: expected a mapping with a name, e\.g\. \{name: Scale, factor: 2\}; "
                    r"registered layers: Scale, Shift; got \{'factor': 2\}$"),
    ([("name", "Scale")], r"^Model\.layer: expected a mapping with a name"),
    ({"name": "Scael"}, r"^Model\.layer: unknown layer 'Scael'\. Did you mean 'Scale'\? "
                        r"Registered layers: Scale, Shift$"),
    ({"name": "Scale", "factr": 2}, r"^Model\.layer Scale: unknown keyword 'factr'\. Did you mean "
                                    r"'factor'\? Accepted: factor, bias$"),
    ({"name": "Scale"}, r"^Model\.layer Scale needs factor$"),
    ({"name": "Scale", "factor": -1}, r"^Model\.layer Scale: factor must be > 0, got -1$"),
])
def test_build_mapping_errors_name_the_place_and_what_fits(config, message):
    registry, _, _ = make_layer_registry()
    with pytest.raises(ConfigError, match=message):
        registry.build_mapping(config, "Model.layer", example="{name: Scale, factor: 2}")


def test_positional_only_parameters_are_not_config_keywords():
    registry, _, _ = make_layer_registry()
    with pytest.raises(ConfigError, match=r"unknown keyword 'inputs'.*Accepted: amount$"):
        registry.build_mapping({"name": "Shift", "inputs": 3}, "Model.layer", 7)


def test_build_list_builds_each_entry_in_order():
    registry, scale, shift = make_layer_registry()
    built = registry.build_list([{"Scale": {"factor": 2}}, {"Scale": {"factor": 5, "bias": 1.0}}],
                                "Model.layers")
    assert [type(item) for item in built] == [scale, scale] and built[1].bias == 1.0
    assert registry.build_list(None, "Model.layers") == []
    assert registry.build_list([], "Model.layers") == []


@pytest.mark.parametrize("entries, allow_empty, message", [
    ({"Scale": {"factor": 2}}, True, r"^Model\.layers: expected a list of layers, each a one-key "
                                     r"mapping `- ClassName: \{keyword: value\}`; got"),
    ([], False, r"^Model\.layers: expected a non-empty list of layers"),
    (None, False, r"^Model\.layers: expected a non-empty list of layers"),
    ([{"Scale": {"factor": 2}}, "Shift"], True, r"^Model\.layers\.1: expected a one-key mapping"),
    ([{"Scale": [2]}], True, r"^Model\.layers\.0: the keywords of 'Scale' must be a mapping or empty"),
    ([{"Scale": {"factor": 2}}, {"Shft": None}], True,
     r"^Model\.layers\.1: unknown layer 'Shft'\. Did you mean 'Shift'\?"),
    ([{"Scale": {"factor": 2, "bais": 1}}], True, r"^Model\.layers\.0 Scale: unknown keyword 'bais'"),
    ([{"Scale": {"factor": 0}}], True, r"^Model\.layers\.0 Scale: factor must be > 0, got 0$"),
])
def test_build_list_errors_name_the_entry(entries, allow_empty, message):
    registry, _, _ = make_layer_registry()
    with pytest.raises(ConfigError, match=message):
        registry.build_list(entries, "Model.layers", allow_empty=allow_empty)


def test_errors_of_nested_components_keep_their_own_place():
    registry = Registry("model")

    @registry.register
    class Outer:
        def __init__(self, inner: dict):
            raise ConfigError(f"Arch.inner: bad inner {inner}")

    with pytest.raises(ConfigError, match=r"^Arch\.inner: bad inner \{\}$"):
        registry.build_mapping({"name": "Outer", "inner": {}}, "Arch")


def test_names_in_configs_are_the_names_in_code():
    import ppq2l.arch  # noqa: F401 - importing the packages registers their components
    import ppq2l.loss  # noqa: F401
    import ppq2l.metric  # noqa: F401
    import ppq2l.optimizer  # noqa: F401
    import ppq2l.postprocess  # noqa: F401
    from ppq2l.registry import ARCHS, BACKBONES, LOSSES, LR_SCHEDULERS, METRICS, OPTIMIZERS, POSTPROCESSES

    for registry in (ARCHS, BACKBONES, LOSSES, LR_SCHEDULERS, METRICS, OPTIMIZERS, POSTPROCESSES):
        assert registry.names(), registry.kind
        for name in registry.names():
            assert registry.get(name).__name__ == name, (registry.kind, name)
