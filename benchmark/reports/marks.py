"""The paper's marks on one column: best in bold, second underlined, † below the best unimodal row, and the
significance of the proposed method's rows against the best baseline.

Significance: for each column, the *best baseline* is the multimodal row outside the proposed method's rows with
the highest mean. Each proposed row is compared with it by a two-sided paired t-test over the seeds both have
(``scipy.stats.ttest_rel``; at least two shared seeds, else no test): ``*`` p < 0.05, ``**`` p < 0.01; the
baseline's cell carries ``°``.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

from benchmark.reports import data as D
from benchmark.reports.typeset import Cell

if TYPE_CHECKING:
    from benchmark.reports.layout import Col, Row, Seeds


ROUND = {"dec": 4, "pct": 4, "num1": 1, "num0": 0}


MARK_NOTE = (
    "Best in bold, second underlined; † = below the best unimodal row; * / ** = above the best baseline (°) with "
    "p < 0.05 / 0.01 in a two-sided paired t-test over seeds."
)


def paired_p(a: Seeds, b: Seeds) -> float | None:
    """Two-sided paired t-test over the seeds both have (None with fewer than two)."""
    seeds = sorted(s for s in a if s in b and D.finite(a[s]) and D.finite(b[s]))
    if len(seeds) < 2:
        return None
    from scipy import stats  # here: importing scipy.stats takes a second, single-seed reports skip it

    x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    if np.allclose(x, y):
        return 1.0
    with warnings.catch_warnings():  # nearly constant differences: scipy warns about precision, p is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_rel(x, y).pvalue)
    return None if math.isnan(p) else p


def mark(cells: dict[str, Cell], rows: list[Row], col: Col) -> None:
    digits = ROUND.get(col.kind, 4)
    means = {r.key: round(cells[r.key].value, digits) for r in rows if D.finite(cells[r.key].value)}
    if col.best and means:
        ranked = sorted(set(means.values()), reverse=True)
        for key, v in means.items():
            cells[key].bold = v == ranked[0]
            cells[key].underline = len(ranked) > 1 and v == ranked[1]
    if col.dagger:
        uni = [means[r.key] for r in rows if r.unimodal and r.key in means]
        if uni:
            for r in rows:
                if not r.unimodal and r.key in means and means[r.key] < max(uni):
                    cells[r.key].dagger = True
    if col.significance:
        baselines = [r for r in rows if not r.unimodal and not r.proposed and r.key in means]
        if not baselines:
            return
        base = max(baselines, key=lambda r: cells[r.key].value)
        tested = False
        for r in rows:
            if not r.proposed or r.key not in means:
                continue
            p = paired_p(col.ours[r.key], col.ours[base.key])
            if p is None:
                continue
            tested = True
            if cells[r.key].value > cells[base.key].value:
                cells[r.key].sig = "**" if p < 0.01 else "*" if p < 0.05 else ""
        cells[base.key].reference = tested
