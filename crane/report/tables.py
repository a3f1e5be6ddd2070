"""A small table model and its Markdown, LaTeX (booktabs), HTML and CSV renderings.

Table builders produce a `Table` (what a reader sees: formatted text, emphasis, notes) and
a tidy `pandas.DataFrame` (what a program reads: numbers, written as CSV). Emphasis: the best
value of a column in bold, the second best underlined.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from crane import files

BEST = "best"
SECOND = "second"
DASH = "–"  # shown for a missing value
METRIC_DECIMALS = 4


@dataclass(frozen=True)
class Cell:
    text: str
    emphasis: str = ""  # "", BEST or SECOND
    mark: str = ""  # significance mark, e.g. "**"


@dataclass(frozen=True)
class Row:
    label: str
    cells: list[Cell]


@dataclass(frozen=True)
class Section:
    label: str | None
    rows: list[Row]


@dataclass
class Table:
    caption: str
    key: str  # LaTeX label suffix: tab:<key>
    stub_header: str  # header of the first (row label) column
    columns: list[str]
    sections: list[Section]
    column_groups: list[tuple[str, int]] | None = None  # spanning headers above `columns`
    notes: list[str] = field(default_factory=list)
    align: str | None = None  # one of l/r per data column; default all right-aligned (numbers)

    def __post_init__(self) -> None:
        width = len(self.columns)
        if self.align is None:
            self.align = "r" * width
        if len(self.align) != width or set(self.align) - {"l", "r", "c"}:
            raise ValueError(f"table {self.key}: align {self.align!r} must give l/r/c for "
                             f"each of the {width} columns")
        if self.column_groups is not None and sum(n for _, n in self.column_groups) != width:
            raise ValueError(f"table {self.key}: column groups span "
                             f"{sum(n for _, n in self.column_groups)} columns, not {width}")
        for section in self.sections:
            for row in section.rows:
                if len(row.cells) != width:
                    raise ValueError(f"table {self.key}: row {row.label!r} has "
                                     f"{len(row.cells)} cells, expected {width}")


# -- formatting helpers ------------------------------------------------------------------------

def format_number(value: float, decimals: int = METRIC_DECIMALS) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.{decimals}f}"


def format_mean_std(mean: float, std: float, decimals: int = METRIC_DECIMALS) -> str:
    """`mean ± std`; the mean alone when std is undefined (a single seed)."""
    if mean is None or math.isnan(mean):
        return DASH
    if std is None or math.isnan(std):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def rank_emphasis(values: Sequence[float], decimals: int = METRIC_DECIMALS,
                  higher_is_better: bool = True) -> list[str]:
    """BEST / SECOND / "" per value, comparing values as displayed (rounded to `decimals`).

    Ties share a rank: every value equal to the best is bold, and every value equal to the
    next distinct value is underlined (dense ranking). Missing values get no emphasis.
    """
    rounded = np.array([round(v, decimals) if v is not None and not math.isnan(v) else math.nan
                        for v in values], dtype=np.float64)
    present = rounded[~np.isnan(rounded)]
    if present.size == 0:
        return [""] * len(values)
    distinct = np.unique(present)
    distinct = distinct[::-1] if higher_is_better else distinct
    best = distinct[0]
    second = distinct[1] if distinct.size > 1 else None
    emphasis = []
    for value in rounded:
        if math.isnan(value):
            emphasis.append("")
        elif value == best:
            emphasis.append(BEST)
        elif second is not None and value == second:
            emphasis.append(SECOND)
        else:
            emphasis.append("")
    return emphasis


# -- Markdown ----------------------------------------------------------------------------------

def _md_escape(text: str) -> str:
    """Escape the table separator and asterisks (significance marks are not emphasis)."""
    return text.replace("|", "\\|").replace("*", "\\*")


def _md_cell(cell: Cell) -> str:
    text = _md_escape(cell.text)
    if cell.emphasis == BEST:
        text = f"**{text}**"
    elif cell.emphasis == SECOND:
        text = f"<u>{text}</u>"
    if cell.mark:
        text = f"{text}<sup>{_md_escape(cell.mark)}</sup>"
    return text


def to_markdown(table: Table) -> str:
    if table.column_groups:
        flat_groups = [group for group, n in table.column_groups for _ in range(n)]
        headers = [f"{group} {column}" for group, column in zip(flat_groups, table.columns)]
    else:
        headers = list(table.columns)
    lines = [f"**{_md_escape(table.caption)}**", ""]
    lines.append("| " + " | ".join([_md_escape(table.stub_header), *map(_md_escape, headers)]) + " |")
    rule = {"l": ":---", "r": "---:", "c": ":---:"}
    lines.append("|" + "|".join([":---", *(rule[a] for a in table.align)]) + "|")
    for section in table.sections:
        if section.label is not None:
            label = f"*{_md_escape(section.label)}*"
            lines.append("| " + " | ".join([label, *([""] * len(headers))]) + " |")
        for row in section.rows:
            lines.append("| " + " | ".join([_md_escape(row.label), *map(_md_cell, row.cells)]) + " |")
    if table.notes:
        lines.append("")
        lines.extend(f"{_md_escape(note)}  " if i < len(table.notes) - 1 else _md_escape(note)
                     for i, note in enumerate(table.notes))
    return "\n".join(lines) + "\n"


# -- LaTeX -------------------------------------------------------------------------------------

_TEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_TEX_UNICODE = {"±": r"$\pm$", "–": "--", "≥": r"$\geq$", "≤": r"$\leq$", "Δ": r"$\Delta$"}
_TEX_PATTERN = re.compile("|".join(re.escape(c) for c in [*_TEX_SPECIAL, *_TEX_UNICODE]))


def tex_escape(text: str) -> str:
    """Escape LaTeX's special characters and map the few non-ASCII symbols we print."""
    return _TEX_PATTERN.sub(lambda m: _TEX_SPECIAL.get(m.group(0)) or _TEX_UNICODE[m.group(0)],
                            text)


def _tex_cell(cell: Cell) -> str:
    text = tex_escape(cell.text)
    if cell.emphasis == BEST:
        text = rf"\textbf{{{text}}}"
    elif cell.emphasis == SECOND:
        text = rf"\underline{{{text}}}"
    if cell.mark:
        text = rf"{text}$^{{{cell.mark}}}$"
    return text


def to_latex(table: Table) -> str:
    """A `table` float holding a booktabs tabular, its caption, label and notes."""
    n_columns = len(table.columns) + 1
    lines = [r"% requires \usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
             rf"\caption{{{tex_escape(table.caption)}}}", rf"\label{{tab:{table.key}}}",
             r"\begin{tabular}{l" + table.align + "}", r"\toprule"]
    if table.column_groups:
        spans, rules, start = [""], [], 2
        for group, n in table.column_groups:
            spans.append(rf"\multicolumn{{{n}}}{{c}}{{{tex_escape(group)}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + n - 1}}}")
            start += n
        lines.append(" & ".join(spans) + r" \\")
        lines.append(" ".join(rules))
    lines.append(" & ".join([tex_escape(table.stub_header), *map(tex_escape, table.columns)])
                 + r" \\")
    for section in table.sections:
        lines.append(r"\midrule")
        if section.label is not None:
            lines.append(rf"\multicolumn{{{n_columns}}}{{l}}{{\textit{{{tex_escape(section.label)}}}}} \\")
        for row in section.rows:
            lines.append(" & ".join([tex_escape(row.label), *map(_tex_cell, row.cells)]) + r" \\")
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}")
    if table.notes:
        lines.append(r"\par\smallskip\footnotesize")
        lines.extend(tex_escape(note) + r"\\" if i < len(table.notes) - 1 else tex_escape(note)
                     for i, note in enumerate(table.notes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# -- HTML --------------------------------------------------------------------------------------

# A standalone page: the Snakemake report shows an .html result inline (in an iframe), while a
# Markdown result can only be downloaded. Plain CSS, no scripts, no external resources.
_HTML_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1rem;
       color: #1f2328; background: #fff; }
table { border-collapse: collapse; font-size: 0.9rem; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; font-size: 1.05rem;
          padding-bottom: 0.5rem; }
th, td { padding: 0.3rem 0.7rem; white-space: nowrap; }
thead th { border-bottom: 1px solid #57606a; font-weight: 600; }
thead tr:first-child th { border-top: 2px solid #1f2328; }
thead th.group { border-bottom: 1px solid #8c959f; text-align: center; }
tbody tr:last-child td, tbody tr:last-child th { border-bottom: 2px solid #1f2328; }
tbody tr:nth-child(even) { background: #f6f8fa; }
tbody th { text-align: left; font-weight: normal; }
tr.section th { font-style: italic; font-weight: 600; background: #eaeef2;
                border-top: 1px solid #8c959f; }
.l { text-align: left; } .r { text-align: right; } .c { text-align: center; }
strong { font-weight: 700; }
.notes { max-width: 60rem; font-size: 0.85rem; color: #424a53; margin-top: 0.8rem; }
.notes p { margin: 0.25rem 0; }
"""


def _html_cell(cell: Cell) -> str:
    text = html.escape(cell.text)
    if cell.emphasis == BEST:
        text = f"<strong>{text}</strong>"
    elif cell.emphasis == SECOND:
        text = f"<u>{text}</u>"
    if cell.mark:
        text = f"{text}<sup>{html.escape(cell.mark)}</sup>"
    return text


def to_html(table: Table) -> str:
    """The table as a standalone HTML page: caption, grouped headers, sections, notes."""
    width = len(table.columns) + 1
    head = []
    if table.column_groups:
        spans = "".join(f'<th class="group" colspan="{n}">{html.escape(group)}</th>'
                        for group, n in table.column_groups)
        head.append(f"<tr><th></th>{spans}</tr>")
    columns = "".join(f'<th class="{a}">{html.escape(column)}</th>'
                      for column, a in zip(table.columns, table.align))
    head.append(f'<tr><th class="l">{html.escape(table.stub_header)}</th>{columns}</tr>')
    body = []
    for section in table.sections:
        if section.label is not None:
            body.append(f'<tr class="section"><th colspan="{width}">'
                        f"{html.escape(section.label)}</th></tr>")
        for row in section.rows:
            cells = "".join(f'<td class="{a}">{_html_cell(cell)}</td>'
                            for cell, a in zip(row.cells, table.align))
            body.append(f"<tr><th>{html.escape(row.label)}</th>{cells}</tr>")
    notes = "".join(f"<p>{html.escape(note)}</p>" for note in table.notes)
    lines = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(table.caption)}</title>", f"<style>{_HTML_STYLE}</style>",
        "</head>", "<body>", f'<table id="tab-{html.escape(table.key)}">',
        f"<caption>{html.escape(table.caption)}</caption>",
        "<thead>", *head, "</thead>", "<tbody>", *body, "</tbody>", "</table>",
        *([f'<div class="notes">{notes}</div>'] if notes else []), "</body>", "</html>",
    ]
    return "\n".join(lines) + "\n"


# -- CSV and writing ---------------------------------------------------------------------------

def to_csv(data: pd.DataFrame, significant_digits: int = 8) -> str:
    """Tidy data as CSV with a fixed float format, so that reruns give identical bytes.

    Significant digits rather than decimals: p-values such as 1e-11 must not print as 0.
    """
    return data.to_csv(index=False, float_format=f"%.{significant_digits}g", lineterminator="\n")


def write_table(table: Table, data: pd.DataFrame, out_dir: Path, stem: str) -> dict[str, Path]:
    """Write <stem>.md, .tex, .html, .csv atomically; return {file name: path}."""
    out_dir = Path(out_dir)
    written = {}
    for suffix, text in ((".md", to_markdown(table)), (".tex", to_latex(table)),
                         (".html", to_html(table)), (".csv", to_csv(data))):
        path = out_dir / f"{stem}{suffix}"
        files.write_text(path, text)
        written[path.name] = path
    return written
