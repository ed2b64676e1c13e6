"""Official Query2Label checkpoints convert to ppq2l checkpoints with identical logits."""
import numpy
import pytest
import torch

from ppq2l.arch import build_model
from ppq2l.config import get_config
from ppq2l.convert.official_checkpoints import convert_checkpoint
from ppq2l.engine.checkpoint import load_model_weights
from ppq2l.errors import CheckpointError

from conftest import DEMO_CONFIG


def _model():
    torch.manual_seed(0)
    config = get_config(str(DEMO_CONFIG), ["Arch.backbone.pretrained=False"])
    return build_model(config["Arch"]).eval()


def _official_state(model):
    """Our weights in the official layout: backbone.0 body, a backbone.1 buffer, module. prefix."""
    weights = {}
    for key, value in model.state_dict().items():
        key = "backbone.0." + key.removeprefix("backbone.") if key.startswith("backbone.") else key
        weights["module." + key] = value.clone()
    weights["module.backbone.1.pos"] = torch.zeros(1, 4, 4)
    return {"state_dict": weights, "best_mAP": numpy.float64(0.5), "epoch": 3}


def test_converted_logits_equal_original(tmp_path):
    model = _model()
    torch.save(_official_state(model), tmp_path / "checkpoint.pkl")
    target = _model()
    torch.nn.init.zeros_(target.fc.W)
    convert_checkpoint("q2l", tmp_path / "checkpoint.pkl", target, tmp_path / "out.pth")
    fresh = _model()
    state = load_model_weights(fresh, tmp_path / "out.pth")
    assert state["converted_from"]["format"] == "q2l"
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh(images), model(images))


def test_a_checkpoint_pickled_under_numpy_1_converts(tmp_path):
    # numpy 2 renamed numpy.core to numpy._core; the official files were pickled before that, and
    # the weights-only unpickler matches the scalar constructor by its pickled name.
    model = _model()
    path = tmp_path / "checkpoint.pkl"
    torch.save(_official_state(model), path, _use_new_zipfile_serialization=False)
    pickled = path.read_bytes()
    assert pickled.count(b"numpy._core.multiarray\nscalar") == 1  # the name this numpy writes
    path.write_bytes(pickled.replace(b"numpy._core.multiarray\nscalar",
                                     b"numpy.core.multiarray\nscalar"))
    target = _model()
    convert_checkpoint("q2l", path, target, tmp_path / "out.pth")
    assert torch.equal(target.fc.W, model.fc.W)


def test_misshaped_key_is_named_and_nothing_written(tmp_path):
    model = _model()
    state = _official_state(model)
    state["state_dict"]["module.fc.b"] = torch.zeros(1, 3)
    state["state_dict"]["module.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "checkpoint.pkl")
    with pytest.raises(CheckpointError, match=r"(?s)extra\.weight.*fc\.b \(1, 3\)"):
        convert_checkpoint("q2l", tmp_path / "checkpoint.pkl", _model(), tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()


class _Payload:
    pass


def test_disallowed_global_is_refused(tmp_path):
    state = _official_state(_model())
    state["extra"] = _Payload()
    torch.save(state, tmp_path / "checkpoint.pkl")
    with pytest.raises(CheckpointError, match="weights-only") as info:
        convert_checkpoint("q2l", tmp_path / "checkpoint.pkl", _model(), tmp_path / "out.pth")
    message = str(info.value)
    assert message.startswith(f"cannot read official checkpoint {tmp_path / 'checkpoint.pkl'}: ")
    assert "_Payload" in message and "weights_only=False" not in message
    assert not (tmp_path / "out.pth").exists()


def test_input_that_is_a_folder_is_called_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match=f"{tmp_path} is a folder, not a checkpoint file"):
        convert_checkpoint("q2l", tmp_path, _model(), tmp_path / "out.pth")
