"""A small table model with the paper's number format and marks, and its LaTeX, Markdown and rich renderings.

A :class:`Table` is a list of rows, each a list of :class:`Cell`; columns carry up to three header levels
(group, name, kind), e.g. ("CREMA-D", "Acc", "ours"). Numbers print as the paper prints them: ``.8105``
(no leading zero, four digits) for scores, ``81.05`` for percentages. Marks: best in bold, second underlined,
a dagger for a multimodal method below the best unimodal row, ``*``/``**`` for a significant paired test
against the best baseline (whose cell carries a ``°``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

# Number formats: "dec" = .8105, "pct" = 81.05 (percent of a fraction), "diff" = signed .8105, "num1"/"num0" =
# plain numbers with one/zero decimals, "text" = the text as given.
FORMATS = ("dec", "pct", "diff", "pctdiff", "num1", "num0", "text")


def _isnan(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_number(x: float | None, kind: str = "dec") -> str:
    """The paper's number format: ``fmt_number(0.81054) == ".8105"``; missing values print as "–"."""
    if _isnan(x):
        return "–"
    if kind == "dec":
        text = f"{x:.4f}"
        return text.replace("0.", ".", 1) if abs(x) < 1 else text
    if kind == "pct":
        return f"{100 * x:.2f}"
    if kind == "diff":
        text = f"{abs(x):.4f}"
        text = text.replace("0.", ".", 1) if abs(x) < 1 else text
        return ("+" if x >= 0 else "-") + text
    if kind == "pctdiff":
        return f"{100 * x:+.2f}"
    if kind == "num1":
        return f"{x:.1f}"
    if kind == "num0":
        return f"{x:.0f}"
    raise ValueError(f"unknown number format {kind!r}; use one of {', '.join(FORMATS)}")


@dataclass
class Cell:
    """One table cell: a mean (and std over seeds), or a text; marks are set by :func:`mark_column`."""

    value: float | None = None
    std: float | None = None
    kind: str = "dec"
    text: str | None = None
    bold: bool = False
    underline: bool = False
    dagger: bool = False
    sig: str = ""  # "", "*", "**"
    reference: bool = False  # the best baseline the significance test compares against

    def number(self) -> str:
        if self.text is not None:
            return self.text
        return fmt_number(self.value, self.kind)

    def std_text(self) -> str | None:
        if self.text is not None or _isnan(self.value) or _isnan(self.std):
            return None
        kind = {"dec": "dec", "pct": "pct", "num1": "num1", "num0": "num0"}.get(self.kind)
        return fmt_number(self.std, kind) if kind else None

    # -- renderings ------------------------------------------------------------------------------------
    def latex(self) -> str:
        core = latex_escape(self.number()) if self.text is not None else self.number().replace("-", "$-$", 1)
        if self.kind in ("pct",) and self.text is None and not _isnan(self.value):
            core += r"\%"
        if self.bold:
            core = rf"\textbf{{{core}}}"
        if self.underline:
            core = rf"\underline{{{core}}}"
        std = self.std_text()
        if std is not None:
            core += rf"{{\scriptsize$\pm${std}}}"
        sup = ("\\dagger" if self.dagger else "") + self.sig + ("\\circ" if self.reference else "")
        if sup:
            core += f"$^{{{sup}}}$"
        return core

    def markdown(self) -> str:
        core = self.number()
        if self.kind == "pct" and self.text is None and not _isnan(self.value):
            core += "%"
        if self.bold:
            core = f"**{core}**"
        if self.underline:
            core = f"<u>{core}</u>"
        std = self.std_text()
        if std is not None:
            core += f" ± {std}"
        core += ("†" if self.dagger else "") + self.sig.replace("*", r"\*") + ("°" if self.reference else "")
        return core.replace("|", r"\|")

    def rich(self) -> str:
        core = self.number()
        if self.kind == "pct" and self.text is None and not _isnan(self.value):
            core += "%"
        std = self.std_text()
        if std is not None:
            core += f" ± {std}"
        core += ("†" if self.dagger else "") + self.sig + ("°" if self.reference else "")
        core = core.replace("[", r"\[")
        if self.bold:
            core = f"[bold]{core}[/bold]"
        if self.underline:
            core = f"[underline]{core}[/underline]"
        return core


@dataclass
class Table:
    """A rendered artefact: ``columns`` are header tuples of equal length, ``rows`` (label, cells)."""

    key: str
    title: str
    caption: str
    columns: list[tuple[str, ...]]
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)
    row_header: str = "Method"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for label, cells in self.rows:
            if len(cells) != len(self.columns):
                raise ValueError(f"row {label!r} has {len(cells)} cells for {len(self.columns)} columns")

    def _header_levels(self) -> list[tuple[str, ...]]:
        """Drop header levels that are empty everywhere."""
        if not self.columns:
            return []
        depth = len(self.columns[0])
        keep = [i for i in range(depth) if any(c[i] for c in self.columns)] or [depth - 1]
        return [tuple(c[i] for i in keep) for c in self.columns]

    def frame(self, render: str) -> pd.DataFrame:
        """The cells as strings (``render`` = latex, markdown or rich) with the header levels as columns."""
        headers = self._header_levels()
        data = [[getattr(c, render)() for c in cells] for _, cells in self.rows]
        if headers and len(headers[0]) > 1:
            cols = pd.MultiIndex.from_tuples(headers)
        else:
            cols = pd.Index([h[0] if h else "" for h in headers])
        return pd.DataFrame(data, columns=cols, index=[label for label, _ in self.rows])


def latex_escape(text: str) -> str:
    """Escape the characters LaTeX treats specially in plain text."""
    out = []
    for ch in str(text):
        out.append(
            {
                "\\": r"\textbackslash{}",
                "_": r"\_",
                "%": r"\%",
                "&": r"\&",
                "#": r"\#",
                "$": r"\$",
                "{": r"\{",
                "}": r"\}",
                "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}",
                "±": r"$\pm$",
                "τ": r"$\tau$",
                "ρ": r"$\rho$",
                "α": r"$\alpha$",
                "Δ": r"$\Delta$",
                "×": r"$\times$",
                "✓": r"$\checkmark$",
                "✗": r"$\times$",
                "–": "--",
                "−": "$-$",
                "†": r"$^{\dagger}$",
                "°": r"$^{\circ}$",
                "<": r"$<$",
                ">": r"$>$",
            }.get(ch, ch)
        )
    return "".join(out)


def to_latex(table: Table, wide: int = 9) -> str:
    """A booktabs ``table`` float through pandas Styler; needs ``booktabs`` (and ``graphicx`` when wide)."""
    frame = table.frame("latex")
    frame.index = [latex_escape(i) for i in frame.index]
    if isinstance(frame.columns, pd.MultiIndex):
        frame.columns = pd.MultiIndex.from_tuples([tuple(latex_escape(x) for x in c) for c in frame.columns])
    else:
        frame.columns = [latex_escape(c) for c in frame.columns]
    frame.index.name = None
    styler = frame.style
    body = styler.to_latex(
        hrules=True,
        column_format="l" + "r" * len(frame.columns),
        multicol_align="c",
        caption=latex_escape(table.caption),
        label=f"tab:{table.key}",
        position="htbp",
        position_float="centering",
    )
    if len(frame.columns) >= wide:
        body = body.replace(r"\begin{tabular}", r"\resizebox{\linewidth}{!}{\begin{tabular}", 1)
        body = body.replace(r"\end{tabular}", r"\end{tabular}}", 1)
    header = f"% {table.title}: generated by benchmark.reports; needs \\usepackage{{booktabs,graphicx,amssymb}}\n"
    return header + body


def to_markdown(table: Table) -> str:
    """A GitHub Markdown table (header levels joined with a space), caption and notes below it."""
    frame = table.frame("markdown")
    headers = [" ".join(x for x in h if x) for h in table._header_levels()]
    lines = [
        "| " + " | ".join([table.row_header, *headers]) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(headers)) + "|",
    ]
    for label, (_, r) in zip(frame.index, frame.iterrows()):
        lines.append("| " + " | ".join([str(label), *map(str, r.tolist())]) + " |")
    out = f"**{table.title}.** {table.caption}\n\n" + "\n".join(lines) + "\n"
    for note in table.notes:
        out += f"\n{note}\n"
    return out


def to_rich(table: Table):  # -> rich.table.Table (imported lazily: rich is only needed for the terminal)
    from rich.table import Table as RichTable

    out = RichTable(title=f"{table.title}", caption=table.caption, title_justify="left", caption_justify="left")
    out.add_column(table.row_header, style="bold")
    for h in table._header_levels():
        out.add_column("\n".join(x for x in h if x) or " ", justify="right")
    frame = table.frame("rich")
    for label, (_, r) in zip(frame.index, frame.iterrows()):
        out.add_row(str(label), *map(str, r.tolist()))
    return out


LATEX_PREAMBLE = r"""\documentclass[10pt]{article}
\usepackage[a4paper,margin=1.5cm]{geometry}
\usepackage[T1]{fontenc}
\usepackage[utf8]{inputenc}
\usepackage{booktabs}
\usepackage{graphicx}
\usepackage{amssymb}
"""


def latex_document(parts: list[str], title: str) -> str:
    """A standalone document around table fragments (``\\input`` names or literal LaTeX)."""
    body = "\n".join(parts)
    return (
        LATEX_PREAMBLE + "\\begin{document}\n" + f"\\section*{{{latex_escape(title)}}}\n" + body + "\n\\end{document}\n"
    )
