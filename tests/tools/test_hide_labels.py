"""ppq2l-hide-labels: exactly the asked share of the known labels becomes -1, reproducibly from
the seed, and nothing else changes."""
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


@pytest.mark.parametrize("extra, message", [(["--fraction", "1.5"], "--fraction must be a number from 0 to 1"),
                                            (["--fraction", "0.5", "--output", "SAME"], "is --input")])
def test_mistakes_are_one_error_line(tmp_path, capsys, extra, message):
    write_list(tmp_path / "full.txt")
    output = str(tmp_path / ("full.txt" if "SAME" in extra else "out.txt"))
    argv = ["--input", str(tmp_path / "full.txt"), "--output", output] + [output if a == "SAME" else a for a in extra]
    assert run_cli(hide_labels.main, argv) == 2
    assert message in capsys.readouterr().err
