"""Writing an evaluation report folder: report.html (readable offline), per_class.csv, the figures
and the thumbnails of the worst classes' errors, from saved scores and the thresholds in use."""
from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppq2l.calibration.scores_file import Scores
from ppq2l.report import page, plots, tables
from ppq2l.report.thumbnails import write_thumbnail
from ppq2l.utils.atomic_write import write_text_atomic

REPORT_FILE, TABLE_FILE = "report.html", "per_class.csv"
FIGURES = {"ap": "ap_per_class.png", "pr": "pr_curves.png", "histograms": "score_histograms.png",
           "confusion": "confusion.png"}
THUMBNAIL_FOLDER = "thumbnails"
MAX_PLOTTED = 80  # classes drawn in the per-class figures; more are unreadable
WORST_CLASSES, EXAMPLES = 5, 6
TOP_CONFUSIONS = 10


@dataclass
class ReportInputs:
    """What a report shows: saved scores, the thresholds in use and where they come from, the
    calibration document when they come from a thresholds.json, and the metrics eval printed."""

    data: Scores
    thresholds: np.ndarray
    threshold_origin: str
    calibration: dict | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def class_names(data: Scores) -> list[str]:
    """The saved class names, or the class indices as text."""
    return list(data.class_names) if data.class_names else [str(i) for i in range(data.scores.shape[1])]


def per_class_csv(table: tables.ClassTable) -> str:
    """per_class.csv: AP, precision, recall and F1 in percent; empty where undefined."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(tables.COLUMNS)
    for row in table.rows():
        writer.writerow([row["class"], *(page.number(row[key], 4) for key in ("ap", "precision",
                                                                              "recall", "f1")),
                         repr(float(row["threshold"])), row["support"], row["predicted"]])
    return stream.getvalue()


def plotted_classes(table: tables.ClassTable) -> tuple[list[int], str]:
    """The classes the per-class figures draw (all, or the MAX_PLOTTED lowest AP), and a note."""
    count = len(table.names)
    if count <= MAX_PLOTTED:
        return list(range(count)), ""
    order = np.argsort(np.nan_to_num(table.ap, nan=-1.0), kind="stable")[:MAX_PLOTTED]
    return sorted(order.tolist()), f"The {MAX_PLOTTED} classes with the lowest AP of {count}. "


def thresholds_note(inputs: ReportInputs) -> str:
    """Where the thresholds come from and, for calibrated ones, their held-out figures and whether
    they were fitted on these very images (then the figures at them are optimistic)."""
    parts = [f"Thresholds in use: {inputs.threshold_origin}."]
    calibration = inputs.calibration
    if calibration:
        fitted = calibration.get("fitted_on") or {}
        source = inputs.data.source
        if fitted.get("list_file") == source.get("list_file") \
                and fitted.get("num_images") == inputs.data.num_images:
            parts.append("They were fitted on these same images, so precision, recall and F1 at "
                         "them are optimistic.")
        summary = (calibration.get("summary") or {}).get("held_out") or {}
        if summary.get("macro_f1") is not None:
            parts.append(f"Held out ({(calibration.get('held_out') or {}).get('method', '')}): "
                         f"macro-F1 {summary['macro_f1'] * 100:.2f}, micro-F1 "
                         f"{summary['micro_f1'] * 100:.2f}; at 0.5: macro-F1 "
                         f"{calibration['summary']['baseline']['macro_f1'] * 100:.2f}.")
    return f'<p class="note">{page.esc(" ".join(parts))}</p>'


def class_rows(table: tables.ClassTable, calibration: dict | None) -> list[list[tuple[str, Any]]]:
    """The sortable table's cells: (shown text, sort value)."""
    entries = (calibration or {}).get("classes") or []
    rows = []
    for index, row in enumerate(table.rows()):
        note = ""
        if index < len(entries):
            note = "pooled threshold" if entries[index].get("fallback") else ""
            if not entries[index].get("target_reached", True):
                note = (note + " target not reached").strip()
        cells = [(str(index), index), (row["class"], row["class"])]
        cells += [(page.number(row[key]), row[key]) for key in ("ap", "precision", "recall", "f1")]
        cells += [(f"{row['threshold']:.4f}", float(row["threshold"])),
                  (str(row["support"]), row["support"]), (str(row["predicted"]), row["predicted"]),
                  (note, note)]
        rows.append(cells)
    return rows


def confusion_section(folder: Path, data: Scores, inputs: ReportInputs, table: tables.ClassTable,
                      names: list[str], classes: list[int], note: str) -> str:
    """The heatmap of false positives per true class and the most frequent pairs as a table."""
    counts = tables.confusion_counts(data.scores, data.targets, inputs.thresholds)
    images = table.counts.support
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(images[:, None] > 0, counts / images[:, None], 0.0)
    plots.confusion_heatmap(rates[np.ix_(classes, classes)], [names[i] for i in classes],
                            folder / FIGURES["confusion"])
    pairs = np.dstack(np.unravel_index(np.argsort(-counts, axis=None, kind="stable"), counts.shape))[0]
    top = [(i, j) for i, j in pairs[:TOP_CONFUSIONS] if counts[i, j] > 0]
    rows = "".join(f"<tr><td>{page.esc(names[i])}</td><td>{page.esc(names[j])}</td>"
                   f"<td>{counts[i, j]}</td><td>{rates[i, j] * 100:.1f}%</td></tr>" for i, j in top)
    return (f"<p>{page.esc(note)}Row: a class present in the image; column: a class predicted "
            f"on that image although it is absent. A cell is the share of the row class's images "
            f"with that false positive.</p>"
            + page.figure_img(FIGURES["confusion"], "multi-label confusion heatmap")
            + "<h3>Most frequent</h3><table><tr><th>present</th><th>wrongly predicted</th>"
              f"<th>images</th><th>share</th></tr>{rows}</table>")


def errors_section(folder: Path, data: Scores, inputs: ReportInputs, table: tables.ClassTable,
                   names: list[str], logger: logging.Logger) -> str:
    """Thumbnails of the top false positives and false negatives of the worst classes."""
    thumbs = folder / THUMBNAIL_FOLDER
    unreadable, parts = 0, []
    for index in table.worst(WORST_CLASSES):
        f1, ap = table.counts.f1[index] * 100, table.ap[index]
        parts.append(f"<h3>{page.esc(names[index])}: F1 {page.number(f1)}, AP {page.number(ap)}, "
                     f"threshold {inputs.thresholds[index]:.4f}</h3>")
        false_positives, false_negatives = tables.error_examples(
            data.scores, data.targets, inputs.thresholds, names, index, EXAMPLES)
        for kind, examples in (("fp", false_positives), ("fn", false_negatives)):
            shown = []
            for rank, example in enumerate(examples):
                target = thumbs / f"{index}_{kind}{rank}.jpg"
                readable = write_thumbnail(data.image_paths[example.index], target)
                unreadable += not readable
                labels = ", ".join(example.labels) or "no labels"
                shown.append((f"{THUMBNAIL_FOLDER}/{target.name}" if readable else None,
                              f"{example.score:.3f} · {Path(data.image_paths[example.index]).name}"
                              f" · true: {labels}"))
            heading = ("Top false positives (highest scores without the class)" if kind == "fp"
                       else "Top false negatives (lowest scores with the class)")
            parts.append(f"<h4>{heading}</h4>{page.example_figures(shown)}")
    if unreadable:
        logger.warning("report: %d error example images could not be read (moved or deleted "
                       "since the scores were saved?); they are shown as placeholders", unreadable)
    return "".join(parts) or "<p>No class has positives.</p>"


def write_report(folder: str | Path, inputs: ReportInputs,
                 logger: logging.Logger | None = None) -> Path:
    """Write the report of `inputs` into `folder` (already checked writable); returns the page."""
    logger = logger or logging.getLogger("ppq2l")
    folder, data = Path(folder), inputs.data
    names = class_names(data)
    table = tables.class_table(data.scores, data.targets, inputs.thresholds, names)
    write_text_atomic(folder / TABLE_FILE, per_class_csv(table))
    classes, note = plotted_classes(table)
    titles = [f"{plots.short(names[i])} ({page.number(table.ap[i], 1)})" for i in classes]
    plots.ap_bars([names[i] for i in classes], table.ap[classes], folder / FIGURES["ap"])
    curves = tables.pr_curves(data.scores, data.targets, table, classes)
    plots.pr_grid(curves, titles, folder / FIGURES["pr"])
    plots.score_histograms(data.scores, np.asarray(data.targets), inputs.thresholds, classes, titles,
                           folder / FIGURES["histograms"])
    summary = tables.summary_metrics(table)
    metrics = [(key, value) for key, value in inputs.metrics.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)]
    summary_html = thresholds_note(inputs) + "<h3>At the thresholds in use</h3>" + \
        page.key_value_table(summary.items())
    if metrics:
        summary_html += "<h3>Metric.Eval (as tools/eval.py prints them)</h3>" + \
            page.key_value_table(metrics)
    headers = ["#", "class", "AP", "precision", "recall", "F1", "threshold", "support",
               "predicted", "note"]
    sections = [
        ("summary", "Summary", summary_html),
        ("classes", "Per-class table", "<p>Percent. Click a column to sort; <a href="
         f'"{TABLE_FILE}">{TABLE_FILE}</a> holds the same numbers.</p>'
         + page.sortable_table(headers, class_rows(table, inputs.calibration), "per-class")),
        ("ap", "AP per class", f"<p>{page.esc(note)}</p>" + page.figure_img(FIGURES["ap"], "AP per class")),
        ("pr", "Precision-recall curves", f"<p>{page.esc(note)}Red dot: the operating point at the "
         f"class's threshold. Title: class (AP).</p>" + page.figure_img(FIGURES["pr"], "PR curves")),
        ("histograms", "Score distributions", f"<p>{page.esc(note)}Grey: images without the class, "
         f"blue: with it (each normalised, log scale); red line: the threshold.</p>"
         + page.figure_img(FIGURES["histograms"], "score histograms")),
        ("confusion", "Confusion view", confusion_section(folder, data, inputs, table, names, classes, note)),
        ("errors", "Errors of the worst classes", errors_section(folder, data, inputs, table, names,
                                                               logger)),
    ]
    unknown = data.num_unknown_labels
    meta = [f"{data.num_images} images, {len(names)} classes; data {data.source.get('list_file')} "
            f"({data.source.get('data')}); checkpoint {data.source.get('checkpoint')}",
            f"mAP {page.number(summary['mAP'])}, macro-F1 {page.number(summary['macro-F1'])}, "
            f"micro-F1 {page.number(summary['micro-F1'])}" if not math.isnan(summary["mAP"]) else "",
            f"{unknown} of {np.asarray(data.targets).size} labels are unknown (-1): each class is judged "
            f"on the images whose label for it is known" if unknown else ""]
    path = folder / REPORT_FILE
    write_text_atomic(path, page.page("Evaluation report", [line for line in meta if line], sections))
    logger.info("wrote the report %s", path)
    return path
