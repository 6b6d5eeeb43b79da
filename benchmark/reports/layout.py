"""How a paper table is laid out: rows (one per method label, in Table-1 order) and measured columns, each
with ours, the paper's value and the difference; values are the mean (and standard deviation, ddof=1) over seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark.reports import data as D
from benchmark.reports.marks import mark
from benchmark.reports.typeset import Cell, Table

Seeds = dict[int, float]


DIFF_KIND = {"dec": "diff", "pct": "pctdiff"}


@dataclass
class Col:
    """One measured column: ours per row and seed, the paper's value per row, how to mark it."""

    name: str
    ours: dict[str, Seeds] = field(default_factory=dict)
    paper: dict[str, float] = field(default_factory=dict)
    paper_dagger: dict[str, bool] = field(default_factory=dict)
    kind: str = "dec"
    group: str = ""
    text: dict[str, str] | None = None  # a text column (no numbers, no paper)
    best: bool = True  # bold best / underline second
    dagger: bool = False
    significance: bool = False


@dataclass
class Row:
    key: str
    label: str
    unimodal: bool = False
    proposed: bool = False


def mean_std(values: Seeds) -> tuple[float | None, float | None]:
    vals = [v for v in values.values() if D.finite(v)]
    if not vals:
        return None, None
    mean = float(np.mean(vals))
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    return mean, std


def build(key: str, title: str, caption: str, rows: list[Row], cols: list[Col], with_paper: bool, **kw) -> Table:
    """Lay out ``cols`` as (group, name, ours/paper/Δ) columns, with the marks computed on our means."""
    headers: list[tuple[str, str, str]] = []
    grid: dict[str, list[Cell]] = {r.key: [] for r in rows}
    for col in cols:
        if col.text is not None:
            headers.append((col.group, col.name, ""))
            for r in rows:
                grid[r.key].append(Cell(text=col.text.get(r.key, "–"), kind="text"))
            continue
        ours = {}
        for r in rows:
            m, s = mean_std(col.ours.get(r.key, {}))
            ours[r.key] = Cell(m, s, kind=col.kind)
        mark(ours, rows, col)
        has_paper = with_paper and any(r.key in col.paper for r in rows)
        headers.append((col.group, col.name, "ours" if has_paper else ""))
        for r in rows:
            grid[r.key].append(ours[r.key])
        if has_paper:
            headers += [(col.group, col.name, "paper"), (col.group, col.name, "Δ")]
            for r in rows:
                p = col.paper.get(r.key)
                grid[r.key].append(Cell(p, kind=col.kind, dagger=col.paper_dagger.get(r.key, False)))
                diff = ours[r.key].value - p if p is not None and D.finite(ours[r.key].value) else None
                grid[r.key].append(Cell(diff, kind=DIFF_KIND.get(col.kind, col.kind)))
    return Table(key, title, caption, headers, [(r.label, grid[r.key]) for r in rows], **kw)


def seeds_of(df: pd.DataFrame, key: Callable[[pd.Series], str], column: str) -> dict[str, Seeds]:
    """``{row key: {seed: value}}`` for one CSV column; repeated (key, seed) pairs are averaged."""
    out: dict[str, dict[int, list[float]]] = {}
    if column not in df:
        return {}
    for _, r in df.iterrows():
        if D.finite(r[column]):
            out.setdefault(key(r), {}).setdefault(int(r["seed"]), []).append(float(r[column]))
    return {k: {s: float(np.mean(v)) for s, v in d.items()} for k, d in out.items()}


def by_label(r: pd.Series) -> str:
    return str(r["label"])


def method_rows(labels: list[str]) -> list[Row]:
    return [Row(x, D.display(x), D.is_unimodal(x), D.is_proposed(x)) for x in D.order_labels(labels)]


def rule_caption(rule: str) -> str:
    return f"Model selection: {D.RULE_NAMES[rule]} (rule {rule}); mean ± std over seeds."
