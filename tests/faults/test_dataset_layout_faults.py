"""The standard-dataset converters and the shard writer run as a user runs them, on folders in the
wrong layout: one `error:` line naming the file that was expected there, no traceback, nothing
written."""
import pytest

from conftest import assert_user_error, run_tool

pytestmark = pytest.mark.slow  # tools run as subprocesses


def test_voc_devkit_folder_one_level_too_high(tmp_path):
    (tmp_path / "VOCdevkit" / "VOC2012" / "ImageSets" / "Main").mkdir(parents=True)
    result = run_tool("tools/create_voc_lists.py", "--dataset_dir", tmp_path / "VOCdevkit", "--split", "train",
                      "--save_name", "voc", "--output_dir", tmp_path / "out")
    assert_user_error(result, f"{tmp_path / 'VOCdevkit' / 'ImageSets' / 'Main' / 'train.txt'} not found",
                      f"use {tmp_path / 'VOCdevkit' / 'VOC2012'}")
    assert not (tmp_path / "out").exists()


def test_nus_wide_without_its_image_list(tmp_path):
    (tmp_path / "Groundtruth" / "AllLabels").mkdir(parents=True)
    result = run_tool("tools/create_nuswide_lists.py", "--dataset_dir", tmp_path, "--split", "train",
                      "--save_name", "nus")
    assert_user_error(result, f"{tmp_path / 'ImageList' / 'Imagelist.txt'} not found (the image list)")
    assert not (tmp_path / "nus.txt").exists()


def test_openimages_without_its_class_descriptions(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "labels.csv").write_text("ImageID,Source,LabelName,Confidence\n")
    result = run_tool("tools/create_openimages_lists.py", "--dataset_dir", tmp_path, "--image_dir", "train",
                      "--labels_csv", "labels.csv", "--class_descriptions", "class-descriptions.csv",
                      "--save_name", "oi")
    assert_user_error(result, f"{tmp_path / 'class-descriptions.csv'} not found (the class descriptions")
    assert not (tmp_path / "oi.csv").exists()
