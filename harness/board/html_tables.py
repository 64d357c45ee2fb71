"""HTML table pieces of the leaderboard page: cells, sortable tables, the style and the
sorter script (both inline: the page loads nothing from anywhere)."""

from __future__ import annotations

from html import escape
from typing import Any

from harness.board.board_view import as_list, num

_TEXT = object()
"""Sort marker: sort by the cell's displayed text."""


def fmt_num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def interval(ci: Any, n: Any = None) -> str:
    """``[lo, hi]``; ``none (n=1)`` for a single value; else ``n/a``."""
    ci = as_list(ci)
    lo, hi = (num(ci[0]), num(ci[1])) if len(ci) == 2 else (None, None)
    if lo is not None and hi is not None:
        return f"[{lo:.3f}, {hi:.3f}]"
    return "none (n=1)" if num(n) == 1 else "n/a"


def td(content: str, sort: Any = _TEXT, cls: str | None = None, extra: str | None = None,
       data_metric: str | None = None) -> str:
    """One escaped cell. ``sort``: the value the sorter uses (a number, a string, or None
    for a missing value, which sorts last); by default the displayed text. ``extra``: a
    second, smaller line (e.g. the bootstrap interval)."""
    attrs = ""
    if sort is not _TEXT:
        key = "" if sort is None else (repr(float(sort)) if num(sort) is not None else str(sort))
        attrs += f' data-sort="{escape(key)}"'
    if cls:
        attrs += f' class="{escape(cls)}"'
    if data_metric:
        attrs += f' data-metric="{escape(data_metric)}"'
    more = f'<br><span class="sub">{escape(extra)}</span>' if extra else ""
    return f"<td{attrs}>{escape(content)}{more}</td>"


def table(table_id: str, head: list[str], body: list[str], cls: str = "") -> str:
    """A sortable table (``id`` for tests and links); ``body`` rows are already escaped;
    ``cls`` adds classes (``fit``: headers wrap, so the table fits the window)."""
    ths = "".join(f'<th scope="col" title="sort by {escape(h)}">{escape(h)}</th>' for h in head)
    rows = "\n".join(body) if body else f'<tr><td colspan="{len(head)}">none</td></tr>'
    classes = " ".join(["sortable", *cls.split()])
    return (f'<div class="scroll"><table class="{escape(classes)}" id="{escape(table_id)}">'
            f"<thead><tr>{ths}</tr></thead>\n<tbody>\n{rows}\n</tbody></table></div>")


STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em 2em;color:#1a1a1a}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1.05em;margin:1.2em 0 .4em}small{color:#666;font-weight:normal}
nav{margin:.5em 0 1em}nav a{color:#0645ad}.lead{max-width:70em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12.5px;margin:.3em 0 1em}
th,td{border:1px solid #d0d0d0;padding:3px 6px;text-align:left;vertical-align:top}
table.sortable thead th{background:#f0f2f5;cursor:pointer;user-select:none;white-space:nowrap;
position:sticky;top:0}
table.sortable thead th:hover{background:#e2e6ec}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td[data-sort]{font-variant-numeric:tabular-nums}tbody tr:nth-child(even){background:#fafafa}
tr.apart{color:#777;font-style:italic}.sub{color:#666;font-size:11px}
table.fit thead th{white-space:normal;min-width:3.5em}td.wrap{max-width:16em;overflow-wrap:anywhere}
tr.no-better td:nth-child(5) .sub{color:#b00;font-weight:bold}
td.prov pre{white-space:pre-wrap;word-break:break-all;max-width:60em;font-size:11px;margin:.3em 0}
table.kv th{background:#f0f2f5;width:12em}
table.confusion{display:inline-table;margin:.3em 1em .8em 0}table.confusion td{text-align:right}
table.confusion td.diag{background:#e3f1e3;font-weight:bold}
details.confusion{margin:.2em 0}
figure{display:inline-block;margin:0 1.5em 1.5em 0;max-width:100%;vertical-align:top}
figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:12px;color:#444;max-width:60em}
"""

SORTER_JS = """
(function () {
  "use strict";
  function key(cell) {
    if (!cell) { return ""; }
    var v = cell.getAttribute("data-sort");
    return v === null ? cell.textContent.trim() : v;
  }
  function missing(k) { return k === "" || k === "n/a"; }
  function sortTable(table, col, th) {
    var body = table.tBodies[0];
    if (!body) { return; }
    var rows = Array.prototype.slice.call(body.rows);
    var keys = rows.map(function (r) { return key(r.cells[col]); });
    var numeric = keys.every(function (k) { return missing(k) || isFinite(Number(k)); });
    var asc = th.getAttribute("aria-sort") !== "ascending";
    var order = rows.map(function (r, i) { return i; });
    order.sort(function (a, b) {
      var x = keys[a], y = keys[b], mx = missing(x), my = missing(y);
      if (mx || my) { return mx === my ? a - b : (mx ? 1 : -1); }
      var c = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      if (c === 0) { return a - b; }
      return asc ? c : -c;
    });
    order.forEach(function (i) { body.appendChild(rows[i]); });
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead) { return; }
    var head = table.tHead.rows[table.tHead.rows.length - 1];
    Array.prototype.forEach.call(head.cells, function (th, col) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortTable(table, col, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortTable(table, col, th); }
      });
    });
  });
})();
"""
