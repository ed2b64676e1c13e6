"""From scores to decisions, run as a user runs it: tools/eval.py saves scores.npz (and the report),
tools/calibrate.py fits thresholds on them without scoring again and reports held-out figures,
tools/report.py writes the report from the saved scores, and the thresholds reach tools/infer.py,
the exported model's metadata and the deploy predictor with no further flag. Mistakes are one
`error:` line."""
import json
import math
import sys

import numpy as np
import pytest
import torch

from ppq2l.arch import build_model
from ppq2l.calibration.policy import parse_policy
from ppq2l.calibration.scores_file import load_scores, save_scores
from ppq2l.calibration.search import fit_thresholds
from ppq2l.calibration.thresholds_file import read_thresholds, write_thresholds
from ppq2l.config import get_config
from ppq2l.data.transforms import build_transforms
from ppq2l.engine.checkpoint import save_checkpoint
from ppq2l.utils.fingerprint import file_fingerprint

from conftest import DEMO_CONFIG, REPO, assert_user_error, run_tool, tiny_overrides

pytestmark = pytest.mark.slow
CLASS, IMAGE = 4, 0  # the class whose threshold is 0.8, and the image scoring 0.7 on it


def argv(*overrides):
    arguments = ["-c", DEMO_CONFIG]
    for override in overrides:
        arguments += ["-o", override]
    return arguments


@pytest.fixture(scope="module")
def run(tiny_demo_root, tmp_path_factory):
    """A checkpoint of a random model whose score of class CLASS on the first val image is 0.7."""
    folder = tmp_path_factory.mktemp("calibrate")
    overrides = tiny_overrides(tiny_demo_root, folder / "out")
    config = get_config(DEMO_CONFIG, overrides)
    torch.manual_seed(0)
    model = build_model(config["Arch"]).eval()
    first = sorted((tiny_demo_root / "val2017").iterdir())[IMAGE]
    image = build_transforms(config["DataLoader"]["Eval"]["dataset"]["transform_ops"])(first.read_bytes())
    with torch.no_grad():
        logit = model(torch.from_numpy(image)[None])[0, CLASS]
        model.fc.b[0, CLASS] += math.log(0.7 / 0.3) - logit
        score = torch.sigmoid(model(torch.from_numpy(image)[None])[0, CLASS]).item()
        assert score == pytest.approx(0.7, abs=1e-5)
    weights = folder / "out" / "best_model.pth"
    weights.parent.mkdir()
    save_checkpoint({"model": model.state_dict(), "config": config}, weights)
    overrides += [f"Global.pretrained_model={weights}", f"Global.save_inference_dir={folder / 'inference'}",
                  f"Infer.infer_imgs={first}"]
    return {"overrides": overrides, "weights": weights, "out": folder / "out", "folder": folder,
            "image": first, "root": tiny_demo_root}


def tool(run, script, *overrides, env=None):
    return run_tool(script, *argv(*run["overrides"], *overrides), env=env)


@pytest.fixture(scope="module")
def evaluated(run):
    result = tool(run, "tools/eval.py", f"Eval.report={run['out'] / 'report'}")
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_eval_saves_the_scores_and_writes_the_report(run, evaluated):
    data = np.load(run["out"] / "scores.npz")
    assert data["scores"].shape == (24, 12) and data["targets"].shape == (24, 12)
    assert data["image_paths"][IMAGE].endswith(run["image"].name)
    assert data["scores"][IMAGE, CLASS] == pytest.approx(0.7, abs=1e-5)
    source = json.loads(str(data["source"]))
    assert source["checkpoint_fingerprint"] == file_fingerprint(run["weights"])
    for name in ("report.html", "per_class.csv", "pr_curves.png", "confusion.png"):
        assert (run["out"] / "report" / name).is_file(), name


def test_calibrate_reuses_the_scores_and_reports_held_out_figures(run, evaluated):
    result = tool(run, "tools/calibrate.py", "Calibrate.min_positives=2", "Calibrate.folds=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reusing the scores of DataLoader.Eval" in result.stderr  # no second pass of the model
    document = json.loads((run["out"] / "thresholds.json").read_text())
    assert document["policy"] == "f1" and len(document["classes"]) == 12
    assert document["fitted_on"]["checkpoint_fingerprint"] == file_fingerprint(run["weights"])
    assert document["fitted_on"]["num_images"] == 24
    assert document["fitted_on"]["list_file"].endswith("multilabel_val_list.txt")
    assert document["held_out"]["method"] == "3-fold cross-fitting on DataLoader.Eval"
    names = (run["root"] / "labels.txt").read_text().split()[1::2]
    assert [entry["name"] for entry in document["classes"]] == names
    summary = document["summary"]
    assert summary["fitted"]["macro_f1"] >= summary["held_out"]["macro_f1"] - 1e-9  # in-sample is optimistic
    printed = result.stdout.splitlines()
    assert printed[0].startswith("saved") and "held out (3-fold cross-fitting" in printed[-1]
    assert f"{summary['held_out']['macro_f1'] * 100:6.2f}" in printed[-1]
    assert any(entry["fallback"] for entry in document["classes"]) == bool(document["fallback_classes"])


def test_thresholds_reach_infer_export_and_deploy_without_flags(run, evaluated):
    names = (run["root"] / "labels.txt").read_text().split()[1::2]
    thresholds = [0.5] * 12
    thresholds[CLASS] = 0.8
    write_thresholds(run["out"] / "thresholds.json", {
        "policy": "fixed:0.5", "fitted_on": {"checkpoint": str(run["weights"]), "num_images": 24,
                                             "checkpoint_fingerprint": file_fingerprint(run["weights"])},
        "classes": [{"name": name, "threshold": value} for name, value in zip(names, thresholds)]})
    inferred = tool(run, "tools/infer.py")
    assert inferred.returncode == 0, inferred.stderr[-3000:]
    assert "auto: per-class thresholds of" in inferred.stderr
    record = json.loads(inferred.stdout.splitlines()[0])
    assert CLASS not in record["class_ids"]  # 0.7 < 0.8
    at_half = tool(run, "tools/infer.py", "Infer.PostProcess.threshold=0.5")
    at_half = json.loads(at_half.stdout.splitlines()[0])
    assert CLASS in at_half["class_ids"]  # the same 0.7 passes a single 0.5

    exported = tool(run, "tools/export_model.py")
    assert exported.returncode == 0, exported.stderr[-3000:]
    inference = run["folder"] / "inference"
    import onnxruntime

    session = onnxruntime.InferenceSession(str(inference / "model.onnx"), providers=["CPUExecutionProvider"])
    metadata = json.loads(session.get_modelmeta().custom_metadata_map["ppq2l"])
    assert metadata["threshold"] == thresholds and metadata["postprocess"]["threshold"] == thresholds
    assert metadata["calibration"]["thresholds_file"] == str(run["out"] / "thresholds.json")
    assert "threshold:\n- 0.5" in (inference / "inference.yml").read_text()

    deployed = run_tool("deploy/python/predict_multilabel.py",
                        "-c", REPO / "deploy/configs/inference_multilabel.yaml",
                        "-o", f"Global.inference_model_dir={inference}",
                        "-o", f"Global.infer_imgs={run['root'] / 'val2017'}", "--check-no-torch")
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    records = [json.loads(line) for line in deployed.stdout.splitlines()]
    assert CLASS not in records[IMAGE]["class_ids"]
    from ppq2l.predict import Predictor

    scores = Predictor(inference).scores(sorted((run["root"] / "val2017").iterdir()))
    assert scores[IMAGE, CLASS] == pytest.approx(0.7, abs=1e-4)
    for record, row in zip(records, scores):  # every record applies every class's threshold
        assert record["class_ids"] == [c for c in range(12) if row[c] >= thresholds[c]]


def test_report_tool_uses_the_saved_scores_and_the_calibrated_thresholds(run, evaluated):
    tool(run, "tools/calibrate.py", "Calibrate.min_positives=2", "Calibrate.folds=3")
    folder = run["folder"] / "report_again"
    result = tool(run, "tools/report.py", f"Eval.report={folder}")
    assert result.returncode == 0, result.stderr[-3000:]
    thresholds = read_thresholds(run["out"] / "thresholds.json").values
    rows = (folder / "per_class.csv").read_text().splitlines()[1:]
    assert [float(row.split(",")[5]) for row in rows] == thresholds.tolist()
    assert "calibrated" in (folder / "report.html").read_text()


def test_calibrate_on_a_separate_dataset(run, evaluated, tmp_path):
    output = tmp_path / "held" / "thresholds.json"
    train_list = run["root"] / "multilabel_train_list.txt"
    result = tool(run, "tools/calibrate.py", "Calibrate.policy=precision:0.9", f"Calibrate.output={output}",
                  f"Calibrate.dataset={{cls_label_path: {train_list}}}")
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(output.read_text())
    assert document["fitted_on"]["data"] == "Calibrate.dataset"
    assert document["fitted_on"]["list_file"] == str(train_list) and document["fitted_on"]["num_images"] == 48
    assert document["held_out"]["num_images"] == 24
    assert document["policy"] == "precision:0.9"
    unreached = [entry["name"] for entry in document["classes"] if not entry["target_reached"]]
    assert unreached == document["unreachable_classes"]
    assert unreached  # the seeded random model misses 0.9 on some classes: said per class, not clamped
    warning = next(line for line in result.stderr.splitlines()
                   if "precision:0.9 is not reached on the fitted data by" in line)
    assert warning.split(" fitted data by ")[1].split("; their")[0].split(", ") == unreached
    for entry in document["classes"]:  # a class of its own threshold (not the pooled one)
        if not entry["fallback"]:
            assert (entry["fitted"]["precision"] >= 0.9) == entry["target_reached"], entry
    assert (output.parent / "scores_calibrate.npz").is_file()


def test_calibrate_leaves_unknown_labels_out(run, evaluated, tmp_path):
    """Scores of a partially labelled list: thresholds.json counts the unknown labels, and each
    class's threshold is the one fitted on its known images alone."""
    data = load_scores(run["out"] / "scores.npz", "Eval.scores")
    rng = np.random.default_rng(0)
    data.targets = np.where(rng.random(data.targets.shape) < 0.3, -1, data.targets).astype(np.int8)
    partial = save_scores(tmp_path / "partial.npz", data)
    output = tmp_path / "thresholds.json"
    result = tool(run, "tools/calibrate.py", f"Calibrate.scores={partial}", f"Calibrate.output={output}",
                  "Calibrate.scope=per_class", "Calibrate.min_positives=1")
    assert result.returncode == 0, result.stderr[-3000:]
    unknown = int((data.targets < 0).sum())
    assert f"{unknown} of {data.targets.size} labels" in result.stderr
    document = json.loads(output.read_text())
    assert document["fitted_on"]["num_unknown_labels"] == document["held_out"]["num_unknown_labels"] == unknown
    assert any(not entry["fallback"] for entry in document["classes"])  # some thresholds are compared below
    for column, entry in enumerate(document["classes"]):
        known = data.targets[:, column] >= 0
        alone = fit_thresholds(data.scores[known, column:column + 1], data.targets[known, column:column + 1],
                               parse_policy("f1"), min_positives=1)
        if not entry["fallback"]:
            assert entry["threshold"] == alone.thresholds[0]
        assert entry["fitted"]["support"] == int((data.targets[:, column] == 1).sum())


def test_scores_without_one_known_label_are_one_error_line(run, evaluated, tmp_path):
    data = load_scores(run["out"] / "scores.npz", "Eval.scores")
    data.targets = np.full_like(data.targets, -1)
    unknown = save_scores(tmp_path / "unknown.npz", data)
    assert_user_error(tool(run, "tools/calibrate.py", f"Calibrate.scores={unknown}"),
                      str(unknown), "every label", "is unknown (-1)")


@pytest.mark.parametrize("overrides, fragments", [
    (["Calibrate.policy=precsion:0.9"], ["Calibrate.policy", "Did you mean 'precision'",
                                         "Valid policies: f1, precision:P, recall:R, fixed:T"]),
    (["Calibrate.polcy=f1"], ["'Calibrate.polcy' does not exist", "Did you mean 'policy'"]),
    (["Calibrate.dataset={cls_label_pth: x.txt}"], ["Calibrate.dataset", "cls_label_pth"]),
    (["Calibrate.scores=missing.npz"], ["Calibrate.scores", "missing.npz does not exist"]),
])
def test_calibrate_mistakes_are_one_error_line(run, overrides, fragments):
    assert_user_error(tool(run, "tools/calibrate.py", *overrides), *fragments)


def test_a_thresholds_file_of_other_classes_is_refused_by_infer(run, tmp_path):
    path = write_thresholds(tmp_path / "other.json", {"classes": [
        {"name": f"class{i}", "threshold": 0.5} for i in range(12)]})
    result = tool(run, "tools/infer.py", f"Infer.PostProcess.threshold={path}")
    assert_user_error(result, str(path), "fitted on other classes", "only in the file: 'class0'")


def test_a_report_without_matplotlib_is_a_clear_error_before_scoring(run, tmp_path):
    fake = tmp_path / "site"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('No module named matplotlib')")
    env = {"PYTHONPATH": f"{fake}{':' if sys.platform != 'win32' else ';'}{REPO}"}
    result = tool(run, "tools/eval.py", f"Eval.report={tmp_path / 'r'}", env=env)
    assert_user_error(result, "Eval.report", "pip install matplotlib")
    assert "eval:" not in result.stderr  # nothing was scored
