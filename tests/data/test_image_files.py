"""The inference file list: path order (the order of the records) from a lazy walk, hidden
entries skipped, and clear errors for a missing source or an empty folder."""
import os
from pathlib import Path

import pytest

from ppq2l.data.image_files import collect_image_files, iter_image_files
from ppq2l.errors import ConfigError


def test_the_lazy_walk_gives_sorted_path_order(tmp_path):
    # names that sort differently as whole strings and as path parts ('-' < '/' < '.' by code)
    names = ["a/b/c.jpg", "a/b.jpg", "a-b.jpg", "a.jpg", "a/z.png", "B.jpg", "b/x.jpg", "ab/y.jpg",
             "a/b c/d.jpg", ".hidden.jpg", "a/.cache/e.jpg", "a/b/.f.jpg"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    os.symlink(tmp_path / "a", tmp_path / "link_to_a")  # a linked folder is not entered
    os.symlink(tmp_path / "a.jpg", tmp_path / "link.jpg")  # a linked file is a file
    expected = sorted(path for path in tmp_path.rglob("*") if path.is_file() and not any(
        part.startswith(".") for part in path.relative_to(tmp_path).parts))
    assert collect_image_files(tmp_path, "key") == expected
    assert Path(tmp_path / "link.jpg") in expected and len(expected) == 10


def test_files_are_read_one_by_one(tmp_path):
    for index in range(5):
        (tmp_path / f"{index}.jpg").write_bytes(b"x")
    files = iter_image_files(tmp_path, "key")
    assert next(files) == tmp_path / "0.jpg"
    (tmp_path / "4.jpg").unlink()  # the walk holds names, not an early snapshot of every file
    assert list(files) == [tmp_path / f"{index}.jpg" for index in (1, 2, 3)]


def test_missing_source_and_empty_folder_are_errors_before_any_file(tmp_path):
    with pytest.raises(ConfigError, match="Global.infer_imgs: .*nope is neither a file nor a folder"):
        iter_image_files(tmp_path / "nope", "Global.infer_imgs")
    (tmp_path / ".only_hidden").write_bytes(b"x")
    with pytest.raises(ConfigError, match="Global.infer_imgs: the folder .* holds no files"):
        iter_image_files(tmp_path, "Global.infer_imgs")
    single = tmp_path / "one.jpg"
    single.write_bytes(b"x")
    assert list(iter_image_files(single, "key")) == [single]
