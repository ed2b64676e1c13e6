"""ppq2l-hide-labels: exactly the asked share of the known labels becomes -1, or exactly the asked
share of the images is kept whole, reproducibly from the seed, and nothing else changes."""
import numpy as np
import pytest

from ppq2l.cli import run_cli
from ppq2l.commands import hide_labels
from ppq2l.data.list_dataset import read_label_list


def write_list(path, rows=40, classes=5):
    labels = np.random.default_rng(1).integers(0, 2, (rows, classes))
    labels[0, 0] = -1  # already unknown: stays unknown and is not counted as known
    path.write_text("".join(f"img {n}.jpg\t{','.join(map(str, row))}\n" for n, row in enumerate(labels)))
    return labels


def test_hides_the_share_reproducibly_and_keeps_the_rest(tmp_path):
    labels = write_list(tmp_path / "full.txt")
    original = (tmp_path / "full.txt").read_bytes()
    counts = hide_labels.main(["--input", str(tmp_path / "full.txt"), "--output", str(tmp_path / "a.txt"),
                               "--fraction", "0.5", "--seed", "3"])
    hide_labels.main(["--input", str(tmp_path / "full.txt"), "--output", str(tmp_path / "b.txt"),
                      "--fraction", "0.5", "--seed", "3"])
    hide_labels.main(["--input", str(tmp_path / "full.txt"), "--output", str(tmp_path / "c.txt"),
                      "--fraction", "0.5", "--seed", "4"])
    paths, hidden, _ = read_label_list(tmp_path / "a.txt", 5)
    assert paths == [f"img {n}.jpg" for n in range(40)]
    assert counts["known_before"] == 199 and counts["hidden"] == 100 == int((hidden < 0).sum()) - 1
    assert np.array_equal(hidden[hidden >= 0], labels[hidden >= 0])
    # positives and negatives alike: each loses about half of its known labels
    newly = (hidden < 0) & (labels >= 0)
    for value in (0, 1):
        assert 0.3 < newly[labels == value].mean() < 0.7
    assert counts["positives_hidden"] == int(newly[labels == 1].sum())
    assert (tmp_path / "full.txt").read_bytes() == original  # the input is left as it was
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()
    assert (tmp_path / "a.txt").read_bytes() != (tmp_path / "c.txt").read_bytes()


@pytest.mark.parametrize("extra, message", [
    (["--fraction", "1.5"], "--fraction must be a number from 0 to 1"),
    (["--keep_images", "-0.1"], "--keep_images must be a number from 0 to 1"),
    (["--fraction", "0.5", "--output", "SAME"], "is --input"),
    ([], "give one of --fraction"),
    (["--fraction", "0.5", "--keep_images", "0.5"], "give only one of --fraction")])
def test_mistakes_are_one_error_line(tmp_path, capsys, extra, message):
    write_list(tmp_path / "full.txt")
    output = str(tmp_path / ("full.txt" if "SAME" in extra else "out.txt"))
    argv = ["--input", str(tmp_path / "full.txt"), "--output", output] + [output if a == "SAME" else a for a in extra]
    assert run_cli(hide_labels.main, argv) == 2
    assert message in capsys.readouterr().err


def test_keep_images_keeps_the_share_of_rows_whole_and_reproducibly(tmp_path):
    labels = write_list(tmp_path / "full.txt")
    source = str(tmp_path / "full.txt")
    counts = hide_labels.main(["--input", source, "--output", str(tmp_path / "a.txt"), "--keep_images", "0.3",
                               "--seed", "3"])
    hide_labels.main(["--input", source, "--output", str(tmp_path / "b.txt"), "--keep_images", "0.3", "--seed", "3"])
    hide_labels.main(["--input", source, "--output", str(tmp_path / "c.txt"), "--keep_images", "0.3", "--seed", "4"])
    paths, kept, _ = read_label_list(tmp_path / "a.txt", 5)
    assert len(paths) == 12 == counts["images"] and counts["images_before"] == 40  # round(0.3 x 40)
    rows = [int(path.split()[1].split(".")[0]) for path in paths]
    assert rows == sorted(set(rows))  # each image once, in the input's order
    assert np.array_equal(kept, labels[rows])  # with its labels as they were, the -1 included
    assert counts["positives"] == int((labels[rows] == 1).sum()) and counts["known"] == int((kept >= 0).sum())
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()
    assert (tmp_path / "a.txt").read_bytes() != (tmp_path / "c.txt").read_bytes()
    # the draw is uniform over the images: over many seeds every row is kept about 30% of the time
    chosen = np.zeros(40)
    for seed in range(300):
        chosen[hide_labels.keep_images(40, 0.3, seed)] += 1
    assert np.all(np.abs(chosen / 300 - 0.3) < 0.15) and chosen.sum() == 300 * 12


def test_the_list_is_read_once(tmp_path, monkeypatch):
    write_list(tmp_path / "full.txt")
    from ppq2l.data import list_dataset, text_files

    calls = []
    real = text_files.read_utf8_text
    for module in (list_dataset, text_files):  # imported by name or looked up when called
        monkeypatch.setattr(module, "read_utf8_text", lambda *args: calls.append(args) or real(*args))
    hide_labels.main(["--input", str(tmp_path / "full.txt"), "--output", str(tmp_path / "a.txt"), "--fraction", "0.5"])
    assert len(calls) == 1


def test_rows_with_a_different_number_of_labels_are_refused(tmp_path, capsys):
    (tmp_path / "full.txt").write_text("a.jpg\t0,1,0\nb.jpg\t1,0\n")
    argv = ["--input", str(tmp_path / "full.txt"), "--output", str(tmp_path / "out.txt"), "--keep_images", "0.5"]
    assert run_cli(hide_labels.main, argv) == 2
    assert "line 2: 2 labels, expected 3 like the first row" in capsys.readouterr().err
    assert not (tmp_path / "out.txt").exists()
