"""The report's HTML: one file with its style and a few lines of script inline (no network, no
libraries), figures referenced as PNG files beside it."""
from __future__ import annotations

import html
import math
from typing import Any, Iterable, Sequence

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
nav a { margin-right: 1em; } .meta { color: #555; } .note { background: #fff6dd; padding: .5em; }
table { border-collapse: collapse; font-size: .85em; }
th, td { padding: .2em .6em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child, td.name { text-align: left; }
table.sortable th { cursor: pointer; background: #f4f4f4; position: sticky; top: 0; }
table.sortable th[data-dir=asc]::after { content: " \\25B2"; }
table.sortable th[data-dir=desc]::after { content: " \\25BC"; }
img.figure { max-width: 100%; border: 1px solid #eee; }
.examples { display: flex; flex-wrap: wrap; gap: .5em; margin-bottom: 1em; }
figure { margin: 0; width: 120px; font-size: .7em; }
figure img { display: block; max-width: 112px; max-height: 112px; }
.missing { width: 112px; height: 60px; background: #eee; display: flex; align-items: center;
           justify-content: center; color: #777; }
"""

# Click a header to sort by it (again to reverse); empty cells (undefined values) stay last.
SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th, column) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var direction = th.dataset.dir === "asc" ? "desc" : "asc";
    th.closest("tr").querySelectorAll("th").forEach(function (o) { delete o.dataset.dir; });
    th.dataset.dir = direction;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column].dataset.v, y = b.cells[column].dataset.v;
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      var nx = parseFloat(x), ny = parseFloat(y);
      var order = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
      return direction === "asc" ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def esc(value: Any) -> str:
    """HTML-escaped text."""
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int = 2) -> str:
    """A number with `digits` decimals, "" when undefined (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def key_value_table(items: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of names and values."""
    rows = "".join(f"<tr><td>{esc(key)}</td><td>{esc(number(value) if not isinstance(value, str) else value)}"
                   f"</td></tr>" for key, value in items)
    return f"<table>{rows}</table>"


def sortable_table(headers: Sequence[str], rows: Sequence[Sequence[tuple[str, Any]]],
                   table_id: str) -> str:
    """A table sortable by any column; each cell is (shown text, sort value)."""
    head = "".join(f"<th>{esc(header)}</th>" for header in headers)
    body = []
    for row in rows:
        cells = []
        for column, (text, value) in enumerate(row):
            kind = ' class="name"' if column < 2 else ""
            sort_value = "" if value is None or (isinstance(value, float) and math.isnan(value)) \
                else value
            cells.append(f'<td{kind} data-v="{esc(sort_value)}">{esc(text)}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table class="sortable" id="{esc(table_id)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def figure_img(source: str, alt: str) -> str:
    """An image element for a figure file beside the page."""
    return f'<img class="figure" src="{esc(source)}" alt="{esc(alt)}">'


def example_figures(examples: Sequence[tuple[str | None, str]]) -> str:
    """A row of thumbnails (file or None when unreadable) with their captions."""
    if not examples:
        return "<p>none</p>"
    items = []
    for source, caption in examples:
        picture = (f'<img src="{esc(source)}" alt="{esc(caption)}">' if source
                   else '<div class="missing">image not readable</div>')
        items.append(f"<figure>{picture}<figcaption>{esc(caption)}</figcaption></figure>")
    return f'<div class="examples">{"".join(items)}</div>'


def page(title: str, meta: Sequence[str], sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document: title, meta lines, a contents line and (id, heading, html) sections."""
    contents = " ".join(f'<a href="#{esc(key)}">{esc(heading)}</a>' for key, heading, _ in sections)
    body = "".join(f'<section id="{esc(key)}"><h2>{esc(heading)}</h2>{content}</section>'
                   for key, heading, content in sections)
    lines = "".join(f'<p class="meta">{esc(line)}</p>' for line in meta)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{esc(title)}</h1>{lines}<nav>{contents}</nav>{body}"
            f"<script>{SCRIPT}</script></body></html>\n")
