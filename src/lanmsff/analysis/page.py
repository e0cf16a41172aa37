"""The report's two renderings: ``report.md`` (tables and links to the PNG figures) and ``report.html``.

``report.html`` is one self-contained file that opens offline: CSS, the plotly library and a few lines
of table script are inlined, static figures are base64 data URIs, nothing is fetched (no CDN, no
fonts). Tables sort by clicking a column header; a filter box and a study selector hide rows and
sections. Every study section starts with its verdicts, the lines that qualify its numbers and one lead
table; the per-test details and full tables fold open below it (``<details>``, in both renderings), and the
statistical method is explained once, at the end of the report.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

from lanmsff.analysis.comparisons import TableBlock
from lanmsff.analysis.study_figures import FigureItem

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1400px;
       color: #222; background: #fff; padding: 0 1em; }
h1 { border-bottom: 2px solid #4c72b0; padding-bottom: .2em; }
h2 { margin-top: 2em; color: #2b4a7e; }
h3 { margin-top: 1.4em; color: #333; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #eef2f8; cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " ▲"; } th[aria-sort="descending"]::after { content: " ▼"; }
td:first-child, th:first-child { text-align: left; font-weight: 600; }
tr:nth-child(even) td { background: #fafafa; }
.scroll { overflow-x: auto; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; border: 1px solid #ddd; padding: .5em; background: #fff; max-width: 100%; }
figure img { max-width: 100%; height: auto; display: block; }
figure.wide { flex: 1 1 640px; }
figcaption { font-size: 13px; color: #555; margin-top: .3em; }
.note { color: #555; font-size: 14px; }
.verdicts { background: #f4f7fb; border-left: 4px solid #4c72b0; padding: .5em 1em; }
.verdicts li { margin: .25em 0; }
.controls { position: sticky; top: 0; background: #fff; padding: .5em 0; border-bottom: 1px solid #ddd; z-index: 5; }
.controls input, .controls select { font-size: 14px; padding: 3px 6px; margin-right: 1em; }
td.error { text-align: left; font-family: monospace; font-size: 12px; white-space: normal; min-width: 30em; }
details { margin: .5em 0; }
details > summary { cursor: pointer; color: #2b4a7e; font-weight: 600; }
.lines p { margin: .3em 0; }
.method p { max-width: 60em; }
"""

SCRIPT = """
(function () {
  function key(text) {
    var t = text.trim().replace(/^[+]/, "");
    var n = parseFloat(t.replace(/,/g, "").replace(/^< ?/, ""));
    return isNaN(n) || !/^[-+<]?\\s?[0-9.,]/.test(t) ? t.toLowerCase() : n;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, column) {
      th.addEventListener("click", function () {
        var up = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", up ? "ascending" : "descending");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[column].textContent), y = key(b.cells[column].textContent);
          if (typeof x !== typeof y) { x = String(x); y = String(y); }
          return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  var filter = document.getElementById("filter"), study = document.getElementById("study");
  function apply() {
    var text = filter.value.toLowerCase(), chosen = study.value;
    document.querySelectorAll("section.study").forEach(function (s) {
      s.style.display = !chosen || s.dataset.study === chosen ? "" : "none";
    });
    document.querySelectorAll("table.sortable tbody tr").forEach(function (row) {
      row.style.display = !text || row.textContent.toLowerCase().indexOf(text) >= 0 ? "" : "none";
    });
  }
  filter.addEventListener("input", apply);
  study.addEventListener("change", apply);
})();
"""


METHOD_TITLE = "How to read this report"


@dataclass
class Fold:
    """Tables that are folded away under a one-line summary (``<details>``)."""

    summary: str
    tables: list[TableBlock]


@dataclass
class Section:
    """One study in the report: verdicts, the lines that qualify them, the lead table, folded details, figures."""

    study: str
    verdicts: list[str]
    lead: TableBlock | None
    figures: list[FigureItem]
    notes: list[str] = field(default_factory=list)
    folds: list[Fold] = field(default_factory=list)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|---" + "|---:" * (len(headers) - 1) + "|"]
    return lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows]


def _md_block(table: TableBlock, level: str = "###") -> list[str]:
    lines = [f"{level} {table.title}", "", *_md_table(table.headers, table.rows), ""]
    return lines + ([table.note, ""] if table.note else [])


def _md_section(section: Section, root: str) -> list[str]:
    lines = [f"## {section.study}", ""]
    lines += [f"- {v}" for v in section.verdicts] + ([""] if section.verdicts else [])
    for note in section.notes:
        lines += [note if note.startswith("⚠") else f"*{note}*", ""]
    if section.lead is not None and section.lead.rows:
        lines += _md_block(section.lead)
    for fold in (f for f in section.folds if any(t.rows for t in f.tables)):
        lines += ["<details>", f"<summary>{html.escape(fold.summary)}</summary>", ""]
        lines += [line for table in fold.tables if table.rows for line in _md_block(table, "####")]
        lines += ["</details>", ""]
    for item in section.figures:
        rel = item.png.relative_to(root).as_posix()
        lines += [f"![{item.caption}]({rel})", ""]
    return lines


def render_markdown(
    title: str, intro: list[str], sections: list[Section], failed: TableBlock, root: str, method: Sequence[str] = ()
) -> str:
    """``report.md``: per study its verdicts, lines, lead table, folded details (``<details>``) and links to the
    PNG figures (``root``-relative); the failed runs; the method, once."""
    lines = [f"# {title}", "", *intro, ""]
    for section in sections:
        lines += _md_section(section, root)
    if failed.rows:
        lines += ["## Failed runs", "", *_md_table(failed.headers, failed.rows), ""]
    if method:
        lines += [f"## {METHOD_TITLE}", "", *(line for paragraph in method for line in (paragraph, ""))]
    return "\n".join(lines)


def _html_table(table: TableBlock, error_column: int | None = None, level: str = "h3") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = []
    for row in table.rows:
        cells = [
            f"<td{' class=error' if i == error_column else ''}>{html.escape(str(v))}</td>" for i, v in enumerate(row)
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return (
        f"<{level}>{html.escape(table.title)}</{level}>"
        f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
        f"</table></div>{note}"
    )


def _html_fold(fold: Fold) -> str:
    tables = "".join(_html_table(t, level="h4") for t in fold.tables if t.rows)
    return f"<details><summary>{html.escape(fold.summary)}</summary>{tables}</details>" if tables else ""


def _html_figure(item: FigureItem) -> str:
    caption = html.escape(item.caption, quote=True)
    if item.html:
        return f'<figure class="wide">{item.html}<figcaption>{caption}</figcaption></figure>'
    data = base64.b64encode(item.png.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{caption}" src="data:image/png;base64,{data}"><figcaption>{caption}</figcaption></figure>'
    )


def _html_section(section: Section) -> str:
    study = html.escape(section.study, quote=True)
    parts = [f'<section class="study" data-study="{study}"><h2>{study}</h2>']
    if section.verdicts:
        items = "".join(f"<li>{html.escape(v)}</li>" for v in section.verdicts)
        parts.append(f'<div class="verdicts"><ul>{items}</ul></div>')
    if section.notes:
        parts.append('<div class="lines">' + "".join(f"<p>{html.escape(n)}</p>" for n in section.notes) + "</div>")
    if section.lead is not None and section.lead.rows:
        parts.append(_html_table(section.lead))
    parts += [_html_fold(f) for f in section.folds]
    parts.append('<div class="figs">' + "".join(_html_figure(f) for f in section.figures) + "</div></section>")
    return "".join(parts)


def render_html(
    title: str,
    intro: list[str],
    sections: list[Section],
    failed: TableBlock,
    plotly_js: str,
    method: Sequence[str] = (),
) -> str:
    """``report.html``: the same content, interactive, in one file that needs no network."""
    options = "".join(
        f'<option value="{html.escape(s.study, quote=True)}">{html.escape(s.study)}</option>' for s in sections
    )
    controls = (
        '<div class="controls"><label>filter rows <input id="filter" type="search" placeholder="variant or study">'
        f'</label><label>study <select id="study"><option value="">all</option>{options}</select></label></div>'
    )
    parts = [f"<h1>{html.escape(title)}</h1>", *(f'<p class="note">{html.escape(p)}</p>' for p in intro), controls]
    parts += [_html_section(s) for s in sections]
    if failed.rows:
        parts.append(f"<section><h2>Failed runs</h2>{_html_table(failed, error_column=5)}</section>")
    if method:
        paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in method)
        parts.append(f'<section class="method"><h2>{METHOD_TITLE}</h2>{paragraphs}</section>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{plotly_js}</script></head>\n<body>\n'
        + "\n".join(parts)
        + f"\n<script>{SCRIPT}</script>\n</body></html>\n"
    )
