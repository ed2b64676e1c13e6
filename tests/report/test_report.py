"""The evaluation report: its files, that it reads offline, that every section is there, and that
the per-class table holds the metrics' own numbers at the thresholds in use."""
import csv
import re
from pathlib import Path

import numpy as np
import pytest

from ppq2l.calibration.scores_file import Scores
from ppq2l.calibration.search import counts_at
from ppq2l.metric import average_precision, threshold_metrics
from ppq2l.report import tables
from ppq2l.report.build import FIGURES, REPORT_FILE, TABLE_FILE, ReportInputs, write_report

SECTIONS = ("summary", "classes", "ap", "pr", "histograms", "confusion", "errors")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def demo_scores(root: Path) -> Scores:
    """The tiny demo val set with scores that favour its labels, some tied, one image missing."""
    lines = (root / "multilabel_val_list.txt").read_text(encoding="utf-8").splitlines()
    paths = [str(root / line.split("\t")[0]) for line in lines]
    targets = np.array([[int(v) for v in line.split("\t")[1].split(",")] for line in lines], np.uint8)
    rng = np.random.default_rng(0)
    scores = 1 / (1 + np.exp(-(rng.normal(-1.0, 1.2, targets.shape) + 2.0 * targets)))
    scores = (np.round(scores * 50) / 50).astype(np.float32)  # ties
    paths[0] = str(root / "val2017" / "moved_away.jpg")
    names = [line.split(" ", 1)[1] for line in (root / "labels.txt").read_text().splitlines()]
    source = {"checkpoint": "w.pth", "data": "DataLoader.Eval", "list_file": "val.txt"}
    return Scores(scores, targets, paths, names, source)


@pytest.fixture(scope="module")
def report(tiny_demo_root, tmp_path_factory):
    data = demo_scores(tiny_demo_root)
    thresholds = np.linspace(0.3, 0.7, data.scores.shape[1])
    folder = tmp_path_factory.mktemp("report")
    calibration = {"fitted_on": {"list_file": "val.txt", "num_images": data.num_images},
                   "held_out": {"method": "5-fold cross-fitting"},
                   "summary": {"held_out": {"macro_f1": 0.4, "micro_f1": 0.5},
                               "baseline": {"macro_f1": 0.3}},
                   "classes": [{"fallback": index == 1, "target_reached": index != 2}
                               for index in range(data.scores.shape[1])]}
    page = write_report(folder, ReportInputs(data, thresholds, "calibrated, thresholds.json",
                                             calibration, {"mAP": 12.5, "OF1": 40.0}))
    return {"data": data, "thresholds": thresholds, "folder": folder, "page": page,
            "html": page.read_text(encoding="utf-8")}


def test_the_report_has_its_files_and_every_section(report):
    folder, html = report["folder"], report["html"]
    assert report["page"] == folder / REPORT_FILE and (folder / TABLE_FILE).is_file()
    for name in FIGURES.values():
        assert (folder / name).read_bytes()[:8] == PNG_SIGNATURE, name
    for section in SECTIONS:
        assert f'<section id="{section}">' in html, section


def test_the_report_reads_offline(report):
    html = report["html"]
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing fetched from a network
    for reference in re.findall(r'(?:src|href)="([^"#]+)"', html):
        assert (report["folder"] / reference).is_file(), reference
    assert "<script>" in html and "<style>" in html  # sorting and style inline


def test_the_table_holds_the_metrics_at_the_thresholds_in_use(report):
    data, thresholds = report["data"], report["thresholds"]
    with (report["folder"] / TABLE_FILE).open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["class"] for row in rows] == data.class_names
    ap = average_precision(data.scores, data.targets) * 100
    positives = data.targets.astype(bool)
    for index, row in enumerate(rows):
        predicted = data.scores[:, index] >= thresholds[index]
        hits = int((predicted & positives[:, index]).sum())
        assert int(row["support"]) == positives[:, index].sum()
        assert int(row["predicted"]) == predicted.sum()
        assert float(row["threshold"]) == thresholds[index]
        assert float(row["ap"]) == pytest.approx(ap[index], abs=1e-4)
        if predicted.any():
            assert float(row["precision"]) == pytest.approx(100 * hits / predicted.sum(), abs=1e-4)
        else:
            assert row["precision"] == ""  # undefined, not 0
        assert float(row["recall"]) == pytest.approx(100 * hits / positives[:, index].sum(), abs=1e-4)
        f1 = 2 * hits / (predicted.sum() + positives[:, index].sum())
        assert float(row["f1"]) == pytest.approx(100 * f1, abs=1e-4)
    # the HTML table: one sortable row per class, with the same F1 as sort value
    body = report["html"].split('id="per-class"')[1].split("</table>")[0]
    assert body.count("<tr>") == len(rows) + 1
    first_f1 = re.findall(r'<td data-v="([^"]*)">', body.split("<tbody>")[1])[3]
    assert float(first_f1) == pytest.approx(float(rows[0]["f1"]), abs=1e-4)
    assert "pooled threshold" in body and "target not reached" in body


def test_the_summary_is_computed_at_the_thresholds_in_use(report):
    data, thresholds = report["data"], report["thresholds"]
    expected = threshold_metrics(data.scores, data.targets, thresholds)
    html = report["html"]
    assert f"<td>OF1</td><td>{expected['OF1']:.2f}</td>" in html
    assert "fitted on these same images" in html  # the in-sample warning
    assert "Metric.Eval" in html and "<td>mAP</td><td>12.50</td>" in html


def test_the_summary_comes_from_the_class_tables_counts():
    rng = np.random.default_rng(3)
    scores = rng.random((50, 5)).astype(np.float32)
    targets = (rng.random((50, 5)) < 0.3).astype(np.int8)
    targets[:, 4] = 0  # a class without positives
    thresholds = np.array([0.5, 0.2, 0.8, 1.0, 0.4])  # class 3: nothing predicted
    table = tables.class_table(scores, targets, thresholds, list("abcde"))
    summary = tables.summary_metrics(table)
    expected = threshold_metrics(scores, targets, thresholds)
    assert {key: summary[key] for key in expected} == pytest.approx(expected)
    assert summary["mAP"] == pytest.approx(float(np.nanmean(table.ap)))


def test_error_examples_and_thumbnails(report):
    data, thresholds, html = report["data"], report["thresholds"], report["html"]
    names = data.class_names
    table = tables.class_table(data.scores, data.targets, thresholds, names)
    worst = table.worst(5)
    f1 = np.nan_to_num(table.counts.f1)
    assert all(f1[worst[i]] <= f1[worst[i + 1]] for i in range(len(worst) - 1))
    for index in worst:
        false_positives, false_negatives = tables.error_examples(
            data.scores, data.targets, thresholds, names, index, 6)
        scores = [example.score for example in false_positives]
        assert scores == sorted(scores, reverse=True)
        assert all(data.targets[e.index, index] == 0 and e.score >= thresholds[index]
                   for e in false_positives)
        assert all(data.targets[e.index, index] == 1 and e.score < thresholds[index]
                   for e in false_negatives)
    assert "image not readable" in html or "moved_away" not in html  # a missing image: a placeholder
    assert len(list((report["folder"] / "thumbnails").glob("*.jpg"))) > 0


def test_confusion_counts_false_positives_per_true_class():
    rng = np.random.default_rng(1)
    scores = rng.random((40, 4)).astype(np.float32)
    targets = (rng.random((40, 4)) < 0.4).astype(np.uint8)
    thresholds = np.array([0.5, 0.6, 0.4, 0.7])
    counts = tables.confusion_counts(scores, targets, thresholds)
    for present in range(4):
        for predicted in range(4):
            expected = sum(1 for row in range(40) if targets[row, present] and not
                           targets[row, predicted] and scores[row, predicted] >= thresholds[predicted])
            assert counts[present, predicted] == expected
    assert np.all(np.diag(counts) == 0)


def test_pr_curve_and_operating_point():
    scores = np.array([[0.9], [0.8], [0.8], [0.3]], dtype=np.float32)
    targets = np.array([[1], [0], [1], [1]], dtype=np.uint8)
    table = tables.class_table(scores, targets, np.array([0.5]), ["a"])
    curve = tables.pr_curves(scores, targets, table, [0])[0]
    # one point per distinct score: the tied 0.8s are one step
    np.testing.assert_allclose(curve.recall, [1 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(curve.precision, [1.0, 2 / 3, 3 / 4])
    assert curve.point == pytest.approx((2 / 3, 2 / 3))
    assert counts_at(scores, targets, np.array([0.5])).predicted.tolist() == [3]


def partially_labelled(tiny_demo_root):
    data = demo_scores(tiny_demo_root)
    rng = np.random.default_rng(3)
    data.targets = np.where(rng.random(data.targets.shape) < 0.3, -1, data.targets).astype(np.int8)
    return data


def test_unknown_labels_count_nowhere_in_the_tables(tiny_demo_root):
    """Each class of a partially labelled set is judged on its known images: AP, counts and the
    PR curve equal those of the known subset; an unknown label is no false positive, no error
    example, and not among an example's labels."""
    data = partially_labelled(tiny_demo_root)
    scores, targets = data.scores, data.targets
    thresholds = np.linspace(0.3, 0.7, scores.shape[1])
    names = [f"c{index}" for index in range(scores.shape[1])]
    table = tables.class_table(scores, targets, thresholds, names)
    curves = tables.pr_curves(scores, targets, table, list(range(scores.shape[1])))
    for index in range(scores.shape[1]):
        known = targets[:, index] >= 0
        column, labels = scores[known, index:index + 1], targets[known, index:index + 1]
        alone = tables.class_table(column, labels, thresholds[index:index + 1], [names[index]])
        np.testing.assert_equal(table.ap[index], alone.ap[0])
        for field in ("true_positives", "predicted", "support"):
            assert getattr(table.counts, field)[index] == getattr(alone.counts, field)[0]
        if alone.counts.support[0]:
            curve = tables.pr_curves(column, labels, alone, [0])[0]
            np.testing.assert_array_equal(curves[index].recall, curve.recall)
            np.testing.assert_array_equal(curves[index].precision, curve.precision)
        false_positives, false_negatives = tables.error_examples(scores, targets, thresholds, names, index, 50)
        assert all(targets[example.index, index] == 0 for example in false_positives)
        assert all(targets[example.index, index] == 1 for example in false_negatives)
        for example in false_positives + false_negatives:
            assert example.labels == [names[j] for j in np.flatnonzero(targets[example.index] == 1)]
    counts = tables.confusion_counts(scores, targets, thresholds)
    for present in range(scores.shape[1]):
        for predicted in range(scores.shape[1]):
            expected = sum(1 for row in range(len(scores)) if targets[row, present] == 1
                           and targets[row, predicted] == 0 and scores[row, predicted] >= thresholds[predicted])
            assert counts[present, predicted] == expected


def test_a_report_of_partially_labelled_scores_says_how_many_are_unknown(tiny_demo_root, tmp_path):
    data = partially_labelled(tiny_demo_root)
    thresholds = np.full(data.scores.shape[1], 0.5)
    page = write_report(tmp_path, ReportInputs(data, thresholds, "0.5", None, {}))
    unknown = int((data.targets < 0).sum())
    assert f"{unknown} of {data.targets.size} labels are unknown (-1)" in page.read_text(encoding="utf-8")
    rows = list(csv.DictReader((tmp_path / TABLE_FILE).open(encoding="utf-8")))
    assert [int(row["support"]) for row in rows] == (data.targets == 1).sum(axis=0).tolist()
