"""Bad data, as a user meets it from the command line: missing and undecodable images (with loader
workers, as the demo config runs), a missing image_root, files that are not UTF-8, list files
concatenated without their final newline, a converter run that would write nothing, and a demo
generator run over a folder holding a user's files. Each ends with one `error:` line naming the
file (and list line) and what to do, before any work is lost, or keeps what is the user's."""
import json

import pytest

from ppq2l.config import get_config, read_yaml, save_config

from conftest import DEMO_CONFIG, assert_user_error, run_tool, tiny_overrides

pytestmark = pytest.mark.slow  # tools run as subprocesses (seconds each)

CONVERTER = "ppq2l/utils/create_coco_multilabel_lists.py"
ANNO = "annotations/instances_val2017.json"


@pytest.fixture(scope="module")
def weights(tiny_demo_root, tmp_path_factory):
    """A checkpoint of the tiny model, made here rather than by a training run."""
    import torch

    from ppq2l.arch import build_model
    from ppq2l.engine.checkpoint import save_checkpoint

    folder = tmp_path_factory.mktemp("weights")
    config = get_config(DEMO_CONFIG, tiny_overrides(tiny_demo_root, folder))
    torch.manual_seed(0)
    save_checkpoint({"model": build_model(config["Arch"]).state_dict()}, folder / "weights.pth")
    return folder / "weights.pth"


def overrides(root, output, *extra, eval_list=True):
    """The tiny setup with one loader worker per split (the demo config's default), as `-o` args;
    without `eval_list`, the Eval dataset keeps the config's own paths."""
    items = tiny_overrides(root, output) + ["Global.epochs=1", "DataLoader.Train.loader.num_workers=1",
                                            "DataLoader.Eval.loader.num_workers=1", *extra]
    if not eval_list:
        items = [item for item in items if not item.startswith(("DataLoader.Eval.dataset.image_root",
                                                                "DataLoader.Eval.dataset.cls_label"))]
    return [part for item in items for part in ("-o", item)]


def rows(root, split):
    return (root / f"multilabel_{split}_list.txt").read_text().splitlines()


def with_row(root, folder, split, row):
    """A copy of a split's list, with absolute image paths and `row` appended; (path, line of row)."""
    lines = [f"{root / line.split(chr(9))[0]}\t{line.split(chr(9))[1]}" for line in rows(root, split)]
    path = folder / f"{split}_list.txt"
    path.write_text("\n".join(lines + [row]) + "\n")
    return path, len(lines) + 1


def test_train_with_a_missing_image_stops_before_the_first_step(tiny_demo_root, tmp_path):
    missing = tmp_path / "lost.jpg"
    list_file, line = with_row(tiny_demo_root, tmp_path, "train", f"{missing}\t{','.join('0' * 12)}")
    output = tmp_path / "output"
    result = run_tool("tools/train.py", "-c", DEMO_CONFIG, *overrides(
        tiny_demo_root, output, f"DataLoader.Train.dataset.cls_label_path={list_file}"))
    assert_user_error(result, f"1 of {line} listed images do not exist: {missing} "
                              f"(line {line} of {list_file})", "skip_bad_images")
    assert "epoch 1/1" not in result.stdout and not (output / "metrics.jsonl").exists()


def eval_case(case, root, folder):
    """(overrides or a config path, expected fragments) for one bad-data case of tools/eval.py."""
    zeros = ",".join("0" * 12)
    if case == "missing image":
        missing = folder / "lost.jpg"
        list_file, line = with_row(root, folder, "val", f"{missing}\t{zeros}")
        return [f"DataLoader.Eval.dataset.cls_label_path={list_file}"], [
            f"{missing} (line {line} of {list_file})", "do not exist"]
    if case == "undecodable image":
        broken = folder / "broken.jpg"
        broken.write_bytes(b"\xff\xd8\xff\xe0 cut short by a failed copy")
        list_file, line = with_row(root, folder, "val", f"{broken}\t{zeros}")
        return [f"DataLoader.Eval.dataset.cls_label_path={list_file}"], [
            f"image {broken} (line {line} of {list_file}): cannot decode image data"]
    if case == "missing image_root":
        return [f"DataLoader.Eval.dataset.image_root={folder / 'no_such_folder'}"], [
            f"image_root {folder / 'no_such_folder'} does not exist"]
    if case == "concatenated lists":
        joined = folder / "all.txt"  # the first list as older converters wrote it: no final newline
        joined.write_text("\n".join(rows(root, "val")) + "\n".join(rows(root, "train")) + "\n")
        line = len(rows(root, "val"))
        return [f"DataLoader.Eval.dataset.cls_label_path={joined}"], [
            f"{joined}, line {line}: the image path", "two rows run together", "final newline"]
    raw = read_yaml(DEMO_CONFIG)  # the CSV cases need keys the demo config does not have
    csv_file, label_map = folder / "val.csv", folder / "labels.txt"
    label_map.write_bytes((root / "labels.txt").read_bytes())
    csv_file.write_text("path,labels\n" + "".join(
        f"{line.split(chr(9))[0]},\n" for line in rows(root, "val")))
    bad = csv_file if case == "latin-1 csv" else label_map
    bad.write_bytes(bad.read_bytes() + "caf\u00e9 1,0\n".encode("latin-1"))
    bad_line = bad.read_text(encoding="latin-1").count("\n")
    raw["DataLoader"]["Eval"]["dataset"] = {
        "name": "CsvDataset", "image_root": str(root), "csv_path": str(csv_file),
        "class_id_map_file": str(label_map),
        "transform_ops": raw["DataLoader"]["Eval"]["dataset"]["transform_ops"]}
    save_config(raw, folder / "config.yaml")
    return folder / "config.yaml", [f"{bad}, line {bad_line}: byte 0xe9 is not UTF-8",
                                    "save it as UTF-8"]


@pytest.mark.parametrize("case", ["missing image", "undecodable image", "missing image_root",
                                  "concatenated lists", "latin-1 csv", "latin-1 label map"])
def test_eval_on_bad_data_is_one_clean_line(case, tiny_demo_root, weights, tmp_path):
    setting, fragments = eval_case(case, tiny_demo_root, tmp_path)
    config, extra = (setting, []) if not isinstance(setting, list) else (DEMO_CONFIG, setting)
    output = tmp_path / "output"
    result = run_tool("tools/eval.py", "-c", config, *overrides(
        tiny_demo_root, output, f"Global.pretrained_model={weights}", *extra,
        eval_list=config == DEMO_CONFIG))
    message = assert_user_error(result, *fragments)
    assert "DataLoader worker" not in result.stderr and "Original Traceback" not in message
    assert not (output / "eval_metrics.json").exists()


@pytest.fixture
def coco_copy(tiny_demo_root, tmp_path):
    """A dataset folder with the demo's val annotations and an empty image folder."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    (root / ANNO).write_bytes((tiny_demo_root / ANNO).read_bytes())
    return root


def test_converter_that_finds_no_image_writes_nothing(coco_copy):
    result = run_tool(CONVERTER, "--dataset_dir", coco_copy, "--image_dir", "val2017",
                      "--anno_path", ANNO, "--save_name", "val", "--save_label_name")
    count = len(json.loads((coco_copy / ANNO).read_text())["images"])
    assert_user_error(result, f"no image of {coco_copy / ANNO} can be listed from "
                              f"{coco_copy / 'val2017'}", f"{count} file(s) not found",
                      "nothing was written")
    assert sorted(path.name for path in coco_copy.iterdir()) == ["annotations", "val2017"]


def test_converter_output_dir_that_is_a_file(coco_copy, tmp_path):
    taken = tmp_path / "lists"
    taken.write_text("a file of the user's")
    result = run_tool(CONVERTER, "--dataset_dir", coco_copy, "--image_dir", "val2017",
                      "--anno_path", ANNO, "--output_dir", taken)
    assert_user_error(result, f"--output_dir: {taken} is a file, not a folder")
    assert taken.read_text() == "a file of the user's"


def test_demo_generator_keeps_a_users_files(tmp_path):
    root = tmp_path / "demo"
    make = ("tools/make_demo_dataset.py", "--root", root, "--num_val", "1")
    assert run_tool(*make, "--num_train", "3").returncode == 0
    (root / "train2017" / "holiday.jpg").write_bytes(b"the user's photo")
    result = run_tool(*make, "--num_train", "2", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (root / "train2017").iterdir()) == [
        "000000000001.jpg", "000000000002.jpg", "holiday.jpg"]
    assert (root / "train2017" / "holiday.jpg").read_bytes() == b"the user's photo"
    (root / "train2017" / "000000000003.jpg").write_bytes(b"also the user's")
    result = run_tool(*make, "--num_train", "3")
    assert_user_error(result, f"{root / 'train2017' / '000000000003.jpg'}", "move them away")
    assert (root / "train2017" / "000000000003.jpg").read_bytes() == b"also the user's"
