"""ONNX export: onnxruntime matches torch for both architectures, and the metadata the model
carries is complete and reads back unchanged."""
import json

import numpy as np
import onnx
import onnxruntime
import pytest
import yaml

from ppq2l.arch import build_model
from ppq2l.commands.export import main as export_main
from ppq2l.config import get_config
from ppq2l.engine.checkpoint import save_checkpoint
from ppq2l.errors import ConfigError, Ppq2lError
from ppq2l.export.metadata import (
    METADATA_KEY,
    attach_metadata,
    decode_metadata,
    encode_metadata,
    metadata_from_properties,
    read_inference_yml,
)

from conftest import DEMO_CONFIG, tiny_overrides

POOLED_ARCH = ("Arch={name: PooledClassifier, class_num: 12, backbone: {name: resnet10t, "
               "pretrained: false, channels: [8, 16, 32, 64]}}")


def export_overrides(root, folder, extra=()):
    """Tiny demo config at 64 px, weights saved to `folder`, export to `folder/inference`."""
    overrides = tiny_overrides(root, folder / "output") + [
        "Global.image_shape=[3, 64, 64]",
        f"Global.save_inference_dir={folder / 'inference'}", *extra]
    config = get_config(DEMO_CONFIG, overrides)
    checkpoint = folder / "weights.pth"
    save_checkpoint({"model": build_model(config["Arch"]).state_dict()}, checkpoint)
    return overrides + [f"Global.pretrained_model={checkpoint}"]


@pytest.fixture(scope="module")
def exported_q2l(tiny_demo_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export_q2l")
    overrides = export_overrides(tiny_demo_root, folder)
    summary = export_main(["-c", str(DEMO_CONFIG), *sum((["-o", o] for o in overrides), [])])
    return folder, summary


def test_query2label_onnxruntime_matches_torch(exported_q2l, capsys):
    folder, summary = exported_q2l
    assert (folder / "inference" / "model.onnx").is_file()
    assert set(summary["max_abs_diff"]) == {"1x3x64x64", "4x3x64x64"}
    assert all(diff <= 1e-4 for diff in summary["max_abs_diff"].values()), summary


def test_pooled_classifier_onnxruntime_matches_torch(tiny_demo_root, tmp_path):
    overrides = export_overrides(tiny_demo_root, tmp_path, [POOLED_ARCH])
    summary = export_main(["-c", str(DEMO_CONFIG), *sum((["-o", o] for o in overrides), [])])
    assert all(diff <= 1e-4 for diff in summary["max_abs_diff"].values()), summary
    metadata = read_inference_yml(tmp_path / "inference" / "inference.yml")
    assert metadata["arch"] == "PooledClassifier"


def test_graph_has_named_io_dynamic_batch_and_sigmoid_scores(exported_q2l):
    folder, _ = exported_q2l
    model = onnx.load(str(folder / "inference" / "model.onnx"))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["scores"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 64, 64]
    assert model.opset_import[0].version == 17
    session = onnxruntime.InferenceSession(str(folder / "inference" / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    scores = session.run(["scores"], {"images": np.full((3, 3, 64, 64), 5.0, np.float32)})[0]
    assert scores.shape == (3, 12) and scores.min() >= 0.0 and scores.max() <= 1.0


def test_metadata_describes_preprocessing_labels_and_thresholds(exported_q2l, tiny_demo_root):
    folder, _ = exported_q2l
    model = onnx.load(str(folder / "inference" / "model.onnx"))
    properties = {entry.key: entry.value for entry in model.metadata_props}
    metadata = metadata_from_properties(properties, "model.onnx")
    labels = (tiny_demo_root / "labels.txt").read_text().split("\n")
    assert metadata["label_names"] == [line.partition(" ")[2] for line in labels if line.strip()]
    assert metadata["class_num"] == 12 and metadata["input_size"] == [64, 64]
    assert metadata["threshold"] == 0.5
    assert metadata["postprocess"] == {"name": "MultiLabelThreshOutput", "threshold": 0.5}
    assert [next(iter(op)) for op in metadata["preprocess"]] == [
        "DecodeImage", "ResizeImage", "NormalizeImage", "ToCHWImage"]
    assert metadata["preprocess"][1]["ResizeImage"]["size"] == 64
    # the YAML copy says the same
    assert read_inference_yml(folder / "inference" / "inference.yml") == metadata


def test_metadata_round_trip_and_rejections():
    original = {"format": "ppq2l.multilabel", "version": 1, "class_num": 2, "input_name": "images",
                "output_name": "scores", "input_size": [8, 8], "preprocess": [{"ToCHWImage": None}],
                "postprocess": {"name": "MultiLabelThreshOutput", "threshold": [0.2, 0.7]},
                "label_names": ["a", "b"], "threshold": [0.2, 0.7]}
    assert decode_metadata(encode_metadata(original), "x") == original
    proto = onnx.ModelProto()
    attach_metadata(proto, {**original, "class_num": 5})
    attach_metadata(proto, original)  # a second write replaces the first
    assert [entry.key for entry in proto.metadata_props] == [METADATA_KEY]
    assert json.loads(proto.metadata_props[0].value) == original
    with pytest.raises(ConfigError, match="no 'ppq2l' metadata"):
        metadata_from_properties({"other": "1"}, "m.onnx")
    with pytest.raises(ConfigError, match="not a ppq2l"):
        decode_metadata(json.dumps({"format": "else"}), "m.onnx")
    with pytest.raises(ConfigError, match="lacks input_size"):
        decode_metadata(encode_metadata({k: v for k, v in original.items() if k != "input_size"}), "m")


def test_dynamic_spatial_export_runs_other_sizes(tiny_demo_root, tmp_path):
    overrides = export_overrides(tiny_demo_root, tmp_path, ["Global.export_dynamic_spatial=True"])
    summary = export_main(["-c", str(DEMO_CONFIG), *sum((["-o", o] for o in overrides), [])])
    assert "2x3x96x96" in summary["max_abs_diff"]
    assert all(diff <= 1e-4 for diff in summary["max_abs_diff"].values()), summary
    with open(tmp_path / "inference" / "inference.yml", encoding="utf-8") as handle:
        assert yaml.safe_load(handle)["dynamic_spatial"] is True


def test_fp16_export_on_cpu_is_refused_clearly(tiny_demo_root, tmp_path):
    overrides = export_overrides(tiny_demo_root, tmp_path, ["Global.export_fp16=True"])
    with pytest.raises(ConfigError, match="export_fp16.*CUDA"):
        export_main(["-c", str(DEMO_CONFIG), *sum((["-o", o] for o in overrides), [])])


def test_parity_check_fails_on_a_wrong_graph(exported_q2l, tiny_demo_root, tmp_path):
    """A model whose weights differ from the exported graph must be reported, not passed."""
    import torch

    from ppq2l.export.onnx_export import SigmoidScores, check_parity

    folder, _ = exported_q2l
    config = get_config(DEMO_CONFIG, tiny_overrides(tiny_demo_root, tmp_path))
    torch.manual_seed(123)
    other = SigmoidScores(build_model(config["Arch"])).eval()
    with pytest.raises(Ppq2lError, match="differ by up to"):
        check_parity(other, folder / "inference" / "model.onnx", [64, 64])


def test_variable_size_preprocessing_needs_dynamic_export(tiny_demo_root, tmp_path):
    """The export preprocesses as Eval does, so an override of the Eval ops reaches it: a
    variable-size resize there is refused without export_dynamic_spatial."""
    overrides = export_overrides(tiny_demo_root, tmp_path, [
        "DataLoader.Eval.dataset.transform_ops.1={ResizeImage: {resize_short: 64}}"])
    with pytest.raises(ConfigError, match="DataLoader.Eval.dataset.transform_ops gives images of "
                                          "varying size.*export_dynamic_spatial"):
        export_main(["-c", str(DEMO_CONFIG), *sum((["-o", o] for o in overrides), [])])


def export_over(folder, good, checkpoint_state):
    """Copy the good export into `folder/inference`, then export `checkpoint_state` over it;
    returns the raised error and the bytes the folder held before."""
    import shutil

    from ppq2l.export.onnx_export import export_from_config

    shutil.copytree(good["inference"], folder / "inference")
    before = {path.name: path.read_bytes() for path in (folder / "inference").iterdir()}
    save_checkpoint(checkpoint_state, folder / "broken.pth")
    config = get_config(DEMO_CONFIG, good["overrides"] + [
        f"Global.save_inference_dir={folder / 'inference'}",
        f"Global.pretrained_model={folder / 'broken.pth'}", f"Global.output_dir={folder / 'out'}"])
    with pytest.raises(Ppq2lError) as raised:
        export_from_config(config)
    return raised.value, before


@pytest.fixture
def good_export(exported_q2l, tiny_demo_root, tmp_path):
    folder, _ = exported_q2l
    overrides = tiny_overrides(tiny_demo_root, tmp_path / "output") + [
        "Global.image_shape=[3, 64, 64]"]
    return {"inference": folder / "inference", "overrides": overrides,
            "weights": build_model(get_config(DEMO_CONFIG, overrides)["Arch"]).state_dict()}


def test_model_with_finite_weights_but_nan_scores_is_blamed_and_export_kept(good_export, tmp_path):
    """Finite but huge weights overflow to NaN: the message blames the model (not onnxruntime),
    names the checkpoint, and the export already in the folder stays byte-identical."""
    weights = good_export["weights"]
    weights["backbone.body.conv1.1.weight"].fill_(1e38)
    error, before = export_over(tmp_path, good_export, {"model": weights})
    message = str(error)
    assert "produces NaN/Inf scores in torch" in message and "differ by" not in message
    assert str(tmp_path / "broken.pth") in message
    assert f"the export already in {tmp_path / 'inference'} is unchanged" in message
    after = {path.name: path.read_bytes() for path in (tmp_path / "inference").iterdir()}
    assert after == before  # same files, same bytes, no staging folder left behind


def test_full_disk_while_writing_the_model_keeps_the_export(good_export, tmp_path, monkeypatch):
    """ENOSPC on the model file is said in words and replaces nothing."""
    import errno
    import os

    real_fsync = os.fsync

    def fsync(descriptor):
        if os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")).startswith(".model.onnx"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    error, before = export_over(tmp_path, good_export, {"model": good_export["weights"]})
    assert "no space left on device" in str(error)
    assert "is unchanged" in str(error)
    after = {path.name: path.read_bytes() for path in (tmp_path / "inference").iterdir()}
    assert after == before
