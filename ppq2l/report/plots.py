"""The report's figures, drawn with matplotlib's Agg canvas (no display, no pyplot state, so the
report never changes the backend of a notebook that calls it), each written as a PNG."""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ppq2l.errors import ConfigError
from ppq2l.report.tables import Curve
from ppq2l.utils.atomic_write import atomic_output

DPI = 80
GRID_COLUMNS = 8
CELL_INCHES = 1.7
HISTOGRAM_BINS = 40
POSITIVE, NEGATIVE, POINT = "#1f77b4", "#9a9a9a", "#d62728"


def require_matplotlib(key: str) -> None:
    """A ConfigError naming `key` when matplotlib, an optional dependency, is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(f"{key}: the report's figures need matplotlib, an optional dependency: "
                          f"pip install matplotlib (it is in requirements.txt), or leave {key} "
                          f"unset") from None


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Any, path: str | os.PathLike) -> Path:
    """Write `figure` as a PNG through a temporary file."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    with atomic_output(path) as handle:
        handle.write(buffer.getvalue())
    return Path(path)


def short(name: str, length: int = 18) -> str:
    """A class name cut to fit a small title."""
    return name if len(name) <= length else name[:length - 1] + "…"


def grid(count: int) -> tuple[Any, list[Any]]:
    """A figure of `count` small axes, GRID_COLUMNS to a row. Fixed margins in inches: a tight
    layout measures every tick label of every axes and takes seconds for 80 of them."""
    columns = min(GRID_COLUMNS, count)
    rows = math.ceil(count / columns)
    width, height = columns * CELL_INCHES + 0.3, rows * CELL_INCHES + 0.3
    figure = new_figure(width, height)
    figure.subplots_adjust(left=0.45 / width, right=1 - 0.1 / width, bottom=0.4 / height,
                           top=1 - 0.25 / height, wspace=0.45, hspace=0.55)
    axes = [figure.add_subplot(rows, columns, index + 1) for index in range(count)]
    return figure, axes


def ap_bars(names: Sequence[str], ap: np.ndarray, path: str | os.PathLike) -> Path:
    """Horizontal bars of per-class AP, lowest at the top."""
    order = np.argsort(np.nan_to_num(ap, nan=-1.0), kind="stable")
    figure = new_figure(7.0, max(2.0, 0.2 * len(order) + 0.8))
    axes = figure.add_subplot(1, 1, 1)
    values = np.nan_to_num(ap[order], nan=0.0)
    axes.barh(np.arange(len(order)), values, color=POSITIVE)
    axes.set_yticks(np.arange(len(order)), [short(names[index], 28) for index in order], fontsize=7)
    axes.invert_yaxis()
    axes.set_xlim(0, 100)
    axes.set_xlabel("AP (%)")
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return save_png(figure, path)


def pr_grid(curves: Sequence[Curve], titles: Sequence[str], path: str | os.PathLike) -> Path:
    """One small precision-recall plot per class, the operating point in use marked."""
    figure, axes = grid(len(curves))
    for ax, curve, title in zip(axes, curves, titles):
        ax.plot(curve.recall, curve.precision, color=POSITIVE, linewidth=1.0, drawstyle="steps-post")
        if curve.point is not None:
            ax.plot(*curve.point, "o", color=POINT, markersize=4)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.set_title(title, fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0].set_xlabel("recall", fontsize=7)
    axes[0].set_ylabel("precision", fontsize=7)
    return save_png(figure, path)


def score_histograms(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray,
                     classes: Sequence[int], titles: Sequence[str], path: str | os.PathLike) -> Path:
    """Per class, the score distributions of its positives (target 1) and negatives (0; unknown
    labels, -1, in neither), each normalised, log scale (negatives outnumber positives), and the
    threshold in use."""
    from matplotlib.ticker import LogLocator, NullLocator

    figure, axes = grid(len(classes))
    bins = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    for ax, index, title in zip(axes, classes, titles):
        column, labels = scores[:, index], targets[:, index]
        for values, color, label in ((column[labels == 0], NEGATIVE, "negatives"),
                                     (column[labels > 0], POSITIVE, "positives")):
            if values.size:
                ax.hist(values, bins=bins, density=True, histtype="step", color=color, label=label)
        ax.axvline(thresholds[index], color=POINT, linewidth=1.0)
        ax.set_yscale("log")
        # few ticks and no minor labels: they crowd a small plot and cost most of the drawing
        ax.yaxis.set_major_locator(LogLocator(numticks=3))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlim(0, 1)
        ax.set_title(title, fontsize=7)
        ax.tick_params(which="both", labelsize=6)
    axes[0].legend(fontsize=5, loc="upper center")
    return save_png(figure, path)


def confusion_heatmap(rates: np.ndarray, names: Sequence[str], path: str | os.PathLike) -> Path:
    """The share of the images of each true class (rows) on which each other class (columns) is
    predicted wrongly."""
    size = max(4.0, 0.16 * len(names) + 2.0)
    figure = new_figure(size + 1.0, size)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(rates, cmap="Reds", vmin=0.0, vmax=max(float(rates.max()), 1e-6))
    ticks = np.arange(len(names))
    labels = [short(name, 16) for name in names]
    font = 7 if len(names) <= 40 else 5
    axes.set_xticks(ticks, labels, rotation=90, fontsize=font)
    axes.set_yticks(ticks, labels, fontsize=font)
    axes.set_xlabel("class predicted although absent (false positive)")
    axes.set_ylabel("class present in the image")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the row's images")
    figure.tight_layout()
    return save_png(figure, path)
