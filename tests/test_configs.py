"""Every shipped config resolves, and its model, loss, metrics, optimizer and transforms build
(pretrained weights switched off, small input) and run a forward pass. The model zoo is written on
`_base_` files (configs/_base_/): each config must resolve to exactly what its flat file did before
that rewrite (the fixture, left as it was), less the Infer.transforms copy (inference preprocessing
is the Eval transform_ops), plus the deliberate recipe changes made since, listed in RECIPE_CHANGES
with the reason for each. A change to what a zoo config resolves to must be added there."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ppq2l.arch import build_model
from ppq2l.config import apply_override, get_config, read_config_file, read_yaml, save_config
from ppq2l.data.device_normalize import split_device_normalization
from ppq2l.data.transforms import build_transforms
from ppq2l.loss import build_loss
from ppq2l.metric import build_metrics
from ppq2l.optimizer import build_optimizer
from ppq2l.predict import inference_transforms

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
BASE_DIR = CONFIG_DIR / "_base_"
CONFIGS = sorted(path for path in CONFIG_DIR.rglob("*.yaml") if "_base_" not in path.parts)
BASES = sorted(BASE_DIR.rglob("*.yaml"))
# The shipped configs as parsed from their files at 54e98ea, when each was one flat file (how the
# fixture was made: its "about" line). Checked in, so no git history is needed to run this.
BEFORE = json.loads((Path(__file__).parent / "fixtures" / "configs_at_54e98ea.json")
                    .read_text(encoding="utf-8"))["configs"]

# Deliberate recipe changes since 54e98ea, as overrides of the flat configs of then, to match the
# official code (docs/recipe_fidelity.md has the table). Changes of the Eval pipeline apply to the
# Infer.transforms copy of then as well.
TRAIN_OPS, EVAL_OPS = "DataLoader.Train.dataset.transform_ops", "DataLoader.Eval.dataset.transform_ops"
INFER_OPS = "Infer.transforms"


def official_pipeline(exif_transpose, randaugment):
    """The input pipelines as the official code builds them: PIL decoding (no EXIF rotation) or
    PaddleClas's OpenCV decoding (EXIF applied), Pillow's antialiased bilinear resize (torchvision
    Resize / PaddleClas backend pil), and the `randaugment` package's policy (RandAugmentV4) in
    place of ours (op 3 of the training ops)."""
    changes = []
    for ops in (TRAIN_OPS, EVAL_OPS):
        changes += [f"{ops}.0.DecodeImage.exif_transpose={exif_transpose}",
                    f"{ops}.1.ResizeImage.interpolation=bilinear", f"{ops}.1.ResizeImage.backend=pil"]
    return changes + [f"{TRAIN_OPS}.3={{RandAugmentV4: {randaugment}}}"]


KEEP_LAST_BATCH = "DataLoader.Train.sampler.drop_last=False"  # ASL/ML-Decoder/PaddleClas loaders
Q2L_PIPELINE = official_pipeline(False, "null") + ["Global.early_stop_rule=query2label"]
ASL_PIPELINE = official_pipeline(False, "null") + [KEEP_LAST_BATCH]
PADDLECLAS_PIPELINE = official_pipeline(True, "{cutout: paddleclas}") + [KEEP_LAST_BATCH]
RECIPE_CHANGES = {
    "MultiLabelCOCO/Query2Label/Q2L_R101_448.yaml": Q2L_PIPELINE,
    "MultiLabelCOCO/Query2Label/Q2L_R101_576.yaml": Q2L_PIPELINE,
    # official backbone.py: the 448-px ImageNet weights, every parameter outside layer2-4 frozen
    "MultiLabelCOCO/Query2Label/Q2L_TResL_448.yaml": Q2L_PIPELINE + [
        "Arch.backbone.name=tresnet_l.miil_in1k_448", "Arch.backbone.frozen_stages=1"],
    "MultiLabelCOCO/Query2Label/Q2L_TResL22k_448.yaml": Q2L_PIPELINE + ["Arch.backbone.frozen_stages=1"],
    # the official SwinTransformer's default stochastic depth; cvt-w24-384x384.yaml's [0, 0, 0.3]
    "MultiLabelCOCO/Query2Label/Q2L_SwinL_384.yaml": Q2L_PIPELINE + ["Arch.backbone.drop_path_rate=0.1"],
    "MultiLabelCOCO/Query2Label/Q2L_CvT_w24_384.yaml": Q2L_PIPELINE + ["Arch.backbone.drop_path_rate=0.3"],
    # ASL train.py trains epochs 0..40 of its 80-epoch OneCycle (`if epoch > Stop_epoch: break`)
    "MultiLabelCOCO/ASL/ASL_TResNetL_448.yaml": ASL_PIPELINE + ["Global.stop_epoch=41"],
    "MultiLabelCOCO/MLDecoder/ML_TResNetL_448.yaml": ASL_PIPELINE,
    "MultiLabelCOCO/MLDecoder/ML_TResNetM_224.yaml": ASL_PIPELINE,
    "MultiLabelCOCO/MLDecoder/ML_TResNetXL_640.yaml": ASL_PIPELINE,
    "MultiLabelCOCO/MLDecoder/ML_ResNet101_448.yaml": PADDLECLAS_PIPELINE,
    "MultiLabelCOCO/MLDecoder/ML_ResNet50_224.yaml": PADDLECLAS_PIPELINE,
    "MultiLabelCOCO/MLDecoder/ML_ResNet50_448.yaml": PADDLECLAS_PIPELINE,
}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_config_builds_and_runs(path):
    config = get_config(path, ["Arch.backbone.pretrained=false"])
    model = build_model(config["Arch"]).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, config["Arch"]["class_num"])
    loss = build_loss(config["Loss"]["Train"])(logits, torch.randint(0, 2, logits.shape).float())
    assert torch.isfinite(loss["loss"])
    assert build_metrics(config["Metric"]["Eval"])
    build_optimizer(config["Optimizer"], model, steps_per_epoch=10, epochs=config["Global"]["epochs"])
    for split in ("Train", "Eval"):
        section = config["DataLoader"][split]
        transforms = build_transforms(section["dataset"]["transform_ops"], f"DataLoader.{split}")
        if (section.get("loader") or {}).get("normalize_on_device"):
            split_device_normalization(transforms, f"DataLoader.{split}")  # ends with normalisation
    build_transforms(inference_transforms(config)[0], "inference preprocessing")


def differences(expected, actual, where="config"):
    """Where `actual` differs from `expected`, types included (1 is not 1.0, True is not 1)."""
    if type(expected) is not type(actual):
        return [f"{where}: {expected!r} expected, got {actual!r}"]
    if isinstance(expected, dict):
        found = [f"{where}.{key}: missing" for key in expected if key not in actual]
        found += [f"{where}.{key}: not expected ({actual[key]!r})" for key in actual
                  if key not in expected]
        for key in expected.keys() & actual.keys():
            found += differences(expected[key], actual[key], f"{where}.{key}")
        return found
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(expected)} entries expected, got {len(actual)}: {actual!r}"]
        return [line for index, (want, got) in enumerate(zip(expected, actual))
                for line in differences(want, got, f"{where}.{index}")]
    return [] if expected == actual else [f"{where}: {expected!r} expected, got {actual!r}"]


def resolve_before(name, folder):
    """The config `name` as get_config resolves its flat file of 54e98ea with the recipe changes
    made since, without Infer.transforms; and that Infer.transforms list with the same changes."""
    flat = copy.deepcopy(BEFORE[name])
    changes = RECIPE_CHANGES.get(name, [])
    for text in changes:
        if text.startswith(EVAL_OPS):
            apply_override(flat, INFER_OPS + text.removeprefix(EVAL_OPS))
    infer_ops = flat["Infer"].pop("transforms")
    save_config(flat, folder / "before.yaml")
    assert differences(flat, read_config_file(folder / "before.yaml")) == []  # a faithful copy
    return get_config(folder / "before.yaml", changes), infer_ops


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_config_resolves_as_before_the_bases(name, tmp_path):
    expected, infer_ops = resolve_before(name, tmp_path)
    actual = get_config(CONFIG_DIR / name)
    assert differences(expected, actual) == []
    # inference and export preprocess exactly as the removed Infer.transforms did
    assert "transforms" not in actual["Infer"]
    assert differences(infer_ops, inference_transforms(actual)[0], "inference preprocessing") == []


def test_the_demo_config_stays_one_file():
    assert "_base_" not in read_yaml(CONFIG_DIR / "quick_start" / "Q2L_demo_shapes.yaml")


def base_files(path):
    """The `_base_` files `path` names, directly or through its bases."""
    bases = read_yaml(path).get("_base_") or []
    found = set()
    for base in [bases] if isinstance(bases, str) else bases:
        base_path = (path.parent / base).resolve()
        found |= {base_path} | base_files(base_path)
    return found


def test_every_base_is_used_and_says_what_it_holds():
    used = set().union(*(base_files(path) for path in CONFIGS))
    assert sorted(used) == BASES
    for path in BASES:
        assert path.read_text(encoding="utf-8").startswith("# "), f"{path}: no header comment"


def containers(node, seen):
    """Collect the ids of every dict and list under `node`; True if one turns up twice."""
    if isinstance(node, (dict, list)):
        if id(node) in seen:
            return True
        seen.add(id(node))
        return any(containers(child, seen) for child in (node.values() if isinstance(node, dict) else node))
    return False


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_no_two_places_share_one_object(path):
    """An override changes one place only (YAML anchors or a shared base must not alias)."""
    assert not containers(get_config(path), set())


def test_overrides_by_op_name_reach_inherited_lists():
    zoo = CONFIG_DIR / "MultiLabelCOCO" / "Query2Label"
    config = get_config(zoo / "Q2L_CvT_w24_384.yaml", [
        "DataLoader.Eval.dataset.transform_ops.ResizeImage.size=320",
        "DataLoader.Train.dataset.transform_ops.Cutout.fact=0.25",
        "Arch.backbone.arch=cvt_13"])
    ops = {split: {next(iter(op)): op[next(iter(op))]
                   for op in config["DataLoader"][split]["dataset"]["transform_ops"]}
           for split in ("Train", "Eval")}
    resize = {"interpolation": "bilinear", "backend": "pil"}
    assert ops["Eval"]["ResizeImage"] == {"size": 320, **resize}
    assert ops["Train"]["ResizeImage"] == {"size": 384, **resize} and ops["Train"]["Cutout"]["fact"] == 0.25
    assert {"ResizeImage": {"size": 320, **resize}} in inference_transforms(config)[0]  # export follows Eval
    assert config["Arch"]["backbone"]["arch"] == "cvt_13"
    # neither the base files nor a config sharing them saw the change
    for path in (zoo / "Q2L_CvT_w24_384.yaml", zoo / "Q2L_SwinL_384.yaml"):
        fresh = get_config(path)
        assert {"ResizeImage": {"size": 384, **resize}} in fresh["DataLoader"]["Eval"]["dataset"]["transform_ops"]


ZOO = sorted(path for path in CONFIGS if "MultiLabelCOCO" in path.parts)


def header(path):
    """The leading comment block of a config file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines[:next(i for i, line in enumerate(lines) if not line.startswith("#"))])


@pytest.mark.parametrize("path", ZOO, ids=lambda path: path.name)
def test_zoo_headers_state_their_source_and_their_deliberate_differences(path):
    text = header(path)
    assert "# Source: " in text and "Published: " in text
    assert "Deliberate difference" in text
    assert "RandAugmentV4" in text  # the official policy, not ours


@pytest.mark.parametrize("path", [path for path in ZOO if "Query2Label" in path.parts], ids=lambda path: path.name)
def test_query2label_headers_offer_the_official_cutout_and_it_is_what_pillow_9_4_painted(path):
    # main_mlc.py's --cut_fact never reaches SLCutoutPIL, which draws with length -1: rectangle
    # [x + 1, y + 1, x - 1, y - 1], which Pillow < 9.5 filled as the 3x3 square around (x, y),
    # clipped to the image (measured with Pillow 9.4.0; 9.5 raises ValueError)
    text = header(path)
    assert "SLCutoutPIL" in text and "Pillow >= 9.5" in text
    override = next(line.strip("# ").strip() for line in text.splitlines() if "Cutout.length=3" in line)
    config = get_config(path, [override.removeprefix("-o ")])
    cutout = build_transforms([op for op in config["DataLoader"]["Train"]["dataset"]["transform_ops"]
                               if "Cutout" in op])
    for seed in range(30):
        painted = cutout(np.zeros((9, 9, 3), np.uint8), np.random.default_rng(seed)).any(axis=2)
        draws = np.random.default_rng(seed)
        y, x = int(draws.integers(9)), int(draws.integers(9))  # the op's centre draws
        expected = np.zeros((9, 9), bool)
        expected[max(0, y - 1):y + 2, max(0, x - 1):x + 2] = True
        np.testing.assert_array_equal(painted, expected)
