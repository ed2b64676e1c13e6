"""OpenImages image-level labels from files in the official layout (written here, with a BOM and
CRLF line ends): confidence 1 positive, 0 verified negative, no row unknown; a class subset in its
own order; conflicting sources made unknown; missing images reported; the labels file streamed
with bounded memory; the converter's CSV read back by CsvDataset gives the same labels."""
import tracemalloc

import cv2
import numpy as np
import pytest

from ppq2l.cli import run_cli
from ppq2l.commands import openimages_lists
from ppq2l.data.csv_dataset import CsvDataset
from ppq2l.data.dataloader import build_dataset
from ppq2l.data.openimages import read_classes, read_openimages, stream_labels
from ppq2l.errors import ConfigError, DataError

OPS = [{"DecodeImage": None}, {"ResizeImage": {"size": 8}}, {"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}]
DESCRIPTIONS = [("/m/01g317", "Person"), ("/m/0k4j", "Car"), ("/m/0bt9lr", "Dog"), ("/m/01yrx", "Cat"),
                ("/m/04yx4", "Man, adult")]
SUBSET = ["/m/0bt9lr", "/m/01g317", "/m/0k4j", "/m/01yrx"]  # Dog, Person, Car, Cat: Cat has no positive
IMAGES = ["000002b66c9c498e", "000002b97e5471a0", "000002c707c9895e", "0000048549557964", "00000d0ca0a8b0a5"]
ROWS = [  # ImageID, Source, LabelName, Confidence
    (IMAGES[0], "verification", "/m/01g317", "1"), (IMAGES[0], "verification", "/m/0k4j", "0"),
    (IMAGES[0], "crowdsource-verification", "/m/01g317", "1"),  # the same label twice
    (IMAGES[1], "verification", "/m/0bt9lr", "1"), (IMAGES[1], "verification", "/m/04yx4", "1"),
    (IMAGES[2], "verification", "/m/0bt9lr", "1"), (IMAGES[2], "crowdsource-verification", "/m/0bt9lr", "0"),
    (IMAGES[2], "verification", "/m/01yrx", "0"),
    (IMAGES[3], "verification", "/m/0k4j", "1"),  # its image is missing
    (IMAGES[4], "verification", "/m/04yx4", "0"),  # no chosen class: not listed
]
U = -1
EXPECTED = [[U, 1, 0, U], [1, U, U, U], [U, U, U, 0]]  # in SUBSET order; image 2's dog conflicts


def write_csv(path, lines):
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")


@pytest.fixture
def oi_root(tmp_path):
    root = tmp_path / "openimages"
    (root / "train").mkdir(parents=True)
    write_csv(root / "oidv7-class-descriptions.csv",
              ["LabelName,DisplayName"] + [f'{mid},"{name}"' for mid, name in DESCRIPTIONS])
    (root / "classes-subset.txt").write_text("\n".join(SUBSET) + "\n")
    write_csv(root / "oidv7-train-annotations-human-imagelabels.csv",
              ["ImageID,Source,LabelName,Confidence"] + [",".join(row) for row in ROWS])
    for image in IMAGES[:3] + IMAGES[4:]:
        cv2.imwrite(str(root / "train" / f"{image}.jpg"), np.full((8, 8, 3), 70, np.uint8))
    return root


def read(root, classes="classes-subset.txt"):
    return read_openimages(root / "oidv7-train-annotations-human-imagelabels.csv",
                           root / "oidv7-class-descriptions.csv", root / "train",
                           None if classes is None else root / classes)


def test_labels_of_the_chosen_classes(oi_root):
    table, chosen, conflicts = read(oi_root)
    assert table.paths == [f"{image}.jpg" for image in IMAGES[:3]] and chosen.mids == SUBSET
    assert table.class_names == ["Dog", "Person", "Car", "Cat"] and conflicts == 1
    assert np.asarray(table.labels).tolist() == EXPECTED
    assert table.skipped["whose image file is missing"] == [str(oi_root / "train" / f"{IMAGES[3]}.jpg")]
    everything, chosen, _ = read(oi_root, classes=None)
    assert chosen.names[-1] == "Man, adult" and len(everything.paths) == 4  # image 4 has a label now


def test_dataset_and_converter_round_trip(oi_root, tmp_path):
    dataset = build_dataset({"name": "OpenImagesDataset", "image_root": str(oi_root / "train"),
                             "labels_csv": str(oi_root / "oidv7-train-annotations-human-imagelabels.csv"),
                             "class_descriptions": str(oi_root / "oidv7-class-descriptions.csv"),
                             "classes": str(oi_root / "classes-subset.txt"), "transform_ops": OPS},
                            4, "DataLoader.Train.dataset")
    assert dataset[1][1].tolist() == EXPECTED[1] and dataset.label_counts().unknown.tolist() == [2, 2, 2, 2]
    summary = openimages_lists.main([
        "--dataset_dir", str(oi_root), "--image_dir", "train", "--labels_csv",
        "oidv7-train-annotations-human-imagelabels.csv", "--class_descriptions", "oidv7-class-descriptions.csv",
        "--classes", "classes-subset.txt", "--save_name", "oi_train", "--output_dir", str(tmp_path / "out"),
        "--save_label_name"])
    text = (tmp_path / "out" / "oi_train.csv").read_text().splitlines()
    assert text[:2] == ["path,labels", f"train/{IMAGES[0]}.jpg,?*;/m/01g317;-/m/0k4j"]
    assert summary["num_positive"] == 2 and summary["num_negative"] == 2 and summary["num_conflicting"] == 1
    assert (tmp_path / "out" / "labels.txt").read_text().splitlines()[0] == "0 Dog"
    back = CsvDataset(oi_root, tmp_path / "out" / "oi_train.csv", OPS, 4,
                      class_id_map_file=tmp_path / "out" / "class_mids.txt")
    assert back.labels.tolist() == EXPECTED
    with pytest.raises(ConfigError, match="4 OpenImages classes are chosen by .*classes-subset.txt but class_num is 5"):
        build_dataset({"name": "OpenImagesDataset", "image_root": str(oi_root / "train"),
                       "labels_csv": str(oi_root / "oidv7-train-annotations-human-imagelabels.csv"),
                       "class_descriptions": str(oi_root / "oidv7-class-descriptions.csv"),
                       "classes": str(oi_root / "classes-subset.txt"), "transform_ops": OPS}, 5, "here")


@pytest.mark.parametrize("rows, message", [
    (["ImageID,Source,LabelName,Confidence", f"{IMAGES[0]},machine,/m/01g317,0.7"],
     r"line 2: confidence '0.7' is not 1 or 0; use a human-verified labels file"),
    (["ImageID,Source,LabelName,Confidence", f"{IMAGES[0]},verification,/m/09x0r,1"],
     r"line 2: class '/m/09x0r' is not in the class descriptions"),
    (["ImageID,Source,LabelName,Confidence", "not-an-id,verification,/m/01g317,1"],
     r"line 2: 'not-an-id' is not an OpenImages image id"),
    ([f"{IMAGES[0]},verification,/m/01g317,1"], r"is not the header of an OpenImages image-level labels file"),
])
def test_bad_labels_files_name_the_line(oi_root, rows, message):
    write_csv(oi_root / "oidv7-train-annotations-human-imagelabels.csv", rows)
    with pytest.raises(DataError, match=message):
        read(oi_root)


def test_wrong_layout_names_the_file_it_expected(oi_root, capsys):
    argv = ["--dataset_dir", str(oi_root), "--image_dir", "train", "--labels_csv", "train-labels.csv",
            "--class_descriptions", "oidv7-class-descriptions.csv", "--save_name", "x"]
    assert run_cli(openimages_lists.main, argv) == 2
    assert f"{oi_root / 'train-labels.csv'} not found (an image-level labels file such as " in capsys.readouterr().err
    with pytest.raises(DataError, match=r"oidv7-classes-trainable.txt not found \(the class subset"):
        read_classes(oi_root / "oidv7-class-descriptions.csv", oi_root / "oidv7-classes-trainable.txt")


def test_the_labels_file_is_streamed_with_bounded_memory(tmp_path):
    """200,000 rows (about 10 MB) of which one class in 50 is kept: the reader's own allocations
    stay far below the file's size."""
    rng = np.random.default_rng(0)
    mids = [f"/m/{n:05d}" for n in range(50)]
    lines = ["ImageID,Source,LabelName,Confidence"]
    lines += [f"{rng.integers(2 ** 62):016x},verification,{mids[n % 50]},{n % 2}" for n in range(200_000)]
    path = tmp_path / "labels.csv"
    write_csv(path, lines)
    del lines
    tracemalloc.start()
    images, classes, values = stream_labels(path, {mids[0]: 0}, set(mids))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(images) == 4000 and set(values.tolist()) == {0}
    assert peak < path.stat().st_size / 10, (peak, path.stat().st_size)
