"""Official ML-Decoder (TResNet and ResNet) and ASL checkpoints convert, through the CLI, to ppq2l
checkpoints with identical logits; keys that do not fit are listed and nothing is written."""
import numpy
import pytest
import torch
import yaml
from timm.layers import ConvNormAct

from ppq2l.arch import build_model
from ppq2l.cli import run_cli
from ppq2l.commands.convert import main as convert_main
from ppq2l.convert.official_checkpoints import convert_checkpoint
from ppq2l.engine.checkpoint import load_model_weights
from ppq2l.errors import CheckpointError

TINY_TRESNET = {"layers": [1, 1, 1, 1], "width_factor": 0.5, "pretrained": False}
TINY_DECODER = {"num_of_groups": 3, "decoder_embedding": 32, "nheads": 2, "dim_feedforward": 32}
ARCHS = {
    "tresnet_v2_ml_decoder": {"name": "MLDecoder", "class_num": 6, **TINY_DECODER,
                              "backbone": {"name": "tresnet_v2_l", **TINY_TRESNET}},
    "resnet_ml_decoder": {"name": "MLDecoder", "class_num": 6, **TINY_DECODER,
                          "backbone": {"name": "resnet18", "layers": [1, 1, 1, 1],
                                       "pretrained": False}},
    "asl": {"name": "PooledClassifier", "class_num": 6,
            "backbone": {"name": "tresnet_m", **TINY_TRESNET}},
}


def _model(arch_name):
    """A model with random weights, BatchNorm statistics included, in eval mode."""
    torch.manual_seed(0)
    model = build_model(dict(ARCHS[arch_name])).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.bias.normal_(0.0, 0.1)
    return model


def _official_tresnet_names(model, raw_abn_weights):
    """Official InPlaceABN-layout names for the ConvNormAct layers of `model`'s TResNet, worked
    out from the modules: `<layer>[.0 with anti-aliasing].0` conv, `.1` InPlaceABN. The stored
    InPlaceABN weight is a signed value whose |w| + 1e-5 is the model's BatchNorm weight."""
    names = {}
    with torch.no_grad():
        for path, module in model.named_modules():
            if not isinstance(module, ConvNormAct):
                continue
            wrapped = path + (".0" if module.aa is not None else "")
            for key in module.conv.state_dict():
                names[f"{path}.conv.{key}"] = f"{wrapped}.0.{key}"
            for key in module.bn.state_dict():
                names[f"{path}.bn.{key}"] = f"{wrapped}.1.{key}"
            raw = torch.randn(module.bn.weight.shape)
            raw_abn_weights[f"{path}.bn.weight"] = raw
            module.bn.weight.copy_(raw.abs() + 1e-5)
    return names


def _official_state(model, arch_name):
    """`model`'s weights as the official code of `arch_name` stores them."""
    raw_abn_weights = {}
    names = _official_tresnet_names(model, raw_abn_weights) if "tresnet" in str(
        ARCHS[arch_name]["backbone"]["name"]) else {}
    official = {}
    for key, value in model.state_dict().items():
        if key in names and key.endswith("num_batches_tracked"):
            continue  # InPlaceABN has no step counter
        name = names.get(key, key).removeprefix("backbone.body.")
        if arch_name == "resnet_ml_decoder":
            name = name.replace("head.", "fc.", 1)  # the head replaces ResNet's fc
        if arch_name == "asl":
            name = name.replace("fc.", "head.fc.", 1) if name.startswith("fc.") else name
        official[name] = raw_abn_weights.get(key, value).clone()
    return official


def _config_file(tmp_path, arch_name):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"Global": {"device": "cpu"}, "Arch": ARCHS[arch_name]}))
    return path


@pytest.mark.parametrize("arch_name, wrap", [
    ("tresnet_v2_ml_decoder", "model"), ("resnet_ml_decoder", None), ("asl", "model")])
def test_cli_converts_to_identical_logits(tmp_path, arch_name, wrap):
    model = _model(arch_name)
    official = _official_state(model, arch_name)
    if wrap:
        official = {wrap: {"module." + key: value for key, value in official.items()},
                    "epoch": 7, "mAP": numpy.float64(0.9)}
    torch.save(official, tmp_path / "official.pth")
    source_format = "asl" if arch_name == "asl" else "ml_decoder"
    assert run_cli(convert_main, ["--from", source_format, "--input", str(tmp_path / "official.pth"),
                          "--config", str(_config_file(tmp_path, arch_name)),
                          "--output", str(tmp_path / "out.pth")]) == 0
    converted = build_model(dict(ARCHS[arch_name])).eval()
    state = load_model_weights(converted, tmp_path / "out.pth")
    assert state["converted_from"]["format"] == source_format
    # smooth blobs at two contrasts: unlike images, so that the logits depend on the input
    blobs = torch.nn.functional.interpolate(torch.rand(2, 3, 4, 4), size=(64, 64), mode="bilinear")
    images = blobs * torch.tensor([1.0, 0.4]).view(2, 1, 1, 1)
    with torch.no_grad():
        assert torch.equal(converted(images), model(images))


def test_unmapped_and_misshaped_keys_are_listed_and_nothing_written(tmp_path):
    official = _official_state(_model("asl"), "asl")
    official["head.fc.bias"] = torch.zeros(7)
    official["head.bottleneck.weight"] = torch.zeros(3)
    torch.save({"model": official}, tmp_path / "official.pth")
    with pytest.raises(CheckpointError, match=r"(?s)head\.bottleneck\.weight.*fc\.bias \(7,\)"):
        convert_checkpoint("asl", tmp_path / "official.pth", build_model(dict(ARCHS["asl"])),
                           tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()


def test_tresnet_weights_for_another_backbone_are_refused(tmp_path):
    torch.save(_official_state(_model("tresnet_v2_ml_decoder"), "tresnet_v2_ml_decoder"),
               tmp_path / "official.pth")
    with pytest.raises(CheckpointError, match=r"missing \(\d+\): backbone\.body\.conv1\.weight"):
        convert_checkpoint("ml_decoder", tmp_path / "official.pth",
                           build_model(dict(ARCHS["resnet_ml_decoder"])), tmp_path / "out.pth")


@pytest.mark.parametrize("source_format, input_name, message", [
    ("tresnet", "official.pth", "unknown source format 'tresnet'; valid: q2l, ml_decoder, asl"),
    ("asl", "absent.pth", "checkpoint not found:"),
])
def test_cli_bad_format_or_missing_file_is_one_line(tmp_path, capsys, source_format, input_name,
                                                     message):
    torch.save({"model": {"w": torch.zeros(1)}}, tmp_path / "official.pth")
    code = run_cli(convert_main, ["--from", source_format, "--input", str(tmp_path / input_name),
                          "--config", str(_config_file(tmp_path, "asl")),
                          "--output", str(tmp_path / "out.pth")])
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1 and error.startswith("error: ") and message in error
    assert not (tmp_path / "out.pth").exists()
