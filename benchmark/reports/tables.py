"""The paper's tables (1-4) and the tables behind its figures (3, 5a-c), ours beside the paper's numbers.

Every builder takes the finished runs of a result CSV and returns :class:`~benchmark.reports.table.Table`
objects (an empty list when the CSV holds nothing for that artefact). Values are the mean (and standard
deviation, ddof=1) over seeds under one model-selection rule.

Significance: for each column, the *best baseline* is the multimodal row outside the MIE/IGM family with the
highest mean. Each MIE-family row is compared with it by a two-sided paired t-test over the seeds both have
(``scipy.stats.ttest_rel``; at least two shared seeds, else no test): ``*`` p < 0.05, ``**`` p < 0.01; the
baseline's cell carries ``°``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark.reports import data as D
from benchmark.reports.table import Cell, Table

Seeds = dict[int, float]
DIFF_KIND = {"dec": "diff", "pct": "pctdiff"}
ROUND = {"dec": 4, "pct": 4, "num1": 1, "num0": 0}
MARK_NOTE = (
    "Best in bold, second underlined; † = below the best unimodal row; * / ** = above the best baseline (°) with "
    "p < 0.05 / 0.01 in a two-sided paired t-test over seeds."
)


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


def _mark(cells: dict[str, Cell], rows: list[Row], col: Col) -> None:
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
        _mark(ours, rows, col)
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


def is_sweep(df: pd.DataFrame) -> bool:
    """Several configurations of the suite's own per (dataset, label): a sweep (a grid), whose runs must not be
    averaged per method."""
    own = df[df["suite_config"]] if "suite_config" in df else df
    if "config_id" in own:
        return bool((own.groupby(["dataset", "label"])["config_id"].nunique() > 1).any())
    return bool(own.duplicated(["dataset", "label", "seed"]).any())


def one_config(df: pd.DataFrame, by: tuple[str, ...] = ("dataset", "label")) -> tuple[pd.DataFrame, str]:
    """One configuration (``config``: config id and thread count) per ``by`` group, for tables with one row per
    method: the suite's own configuration, and among several the one with the most runs. Returns the rows and
    a caption sentence naming what was left out ("" if nothing)."""
    if df.empty or "config" not in df:
        return df, ""
    keep, dropped = [], 0
    for _, g in df.groupby(list(by), sort=False, dropna=False):
        if g["config"].nunique() > 1:
            own = g[g["suite_config"]] if "suite_config" in g and g["suite_config"].any() else g
            counts = own["config"].value_counts()
            best = min(counts.index, key=lambda c: (-counts[c], str(c)))
            dropped += int((g["config"] != best).sum())
            g = g[g["config"] == best]
        keep.append(g)
    if not dropped:
        return df, ""
    note = (
        f" Rows: the suite's own configuration (where a method ran with several, the one with most runs); "
        f"{dropped} run(s) of other configurations or thread counts are not averaged in (see the summary)."
    )
    return pd.concat(keep), note


def variants(df: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """``(dataset, label, config)`` -> what sets that configuration apart from the label's others, e.g.
    ``train.epochs=2`` or ``1 thread``; "" for the label's only configuration, or its only one of the suite's own
    (``suite_config``) when the others are not."""
    out: dict[tuple[str, str, str], str] = {}
    cols = [*D.config_columns(df), "torch_threads"]
    for (ds, label), g in df.groupby(["dataset", "label"], sort=False):
        first = g.drop_duplicates("config").set_index("config")
        own = set(g.loc[g["suite_config"], "config"]) if "suite_config" in g else set(first.index)
        if len(first) == 1:
            out[(ds, label, first.index[0])] = ""
            continue
        differ = [c for c in cols if c in first and first[c].astype(str).nunique() > 1]
        for cfg, r in first.iterrows():
            if len(own) == 1 and cfg in own:
                out[(ds, label, str(cfg))] = ""
                continue
            parts = []
            for c in differ[:3]:
                if c == "torch_threads":
                    parts.append(
                        f"{int(r[c])} thread{'s' if int(r[c]) != 1 else ''}" if D.finite(r[c]) else "threads ?"
                    )
                else:
                    parts.append(f"{c}={r[c]}")
            text = ", ".join(parts) + (", …" if len(differ) > 3 else "")
            out[(ds, label, str(cfg))] = text or f"config {cfg}"
    return out


def _label(r: pd.Series) -> str:
    return str(r["label"])


def _rows(labels: list[str]) -> list[Row]:
    return [Row(x, D.display(x), D.is_unimodal(x), D.is_proposed(x)) for x in D.order_labels(labels)]


def _rule_caption(rule: str) -> str:
    return f"Model selection: {D.RULE_NAMES[rule]} (rule {rule}); mean ± std over seeds."


# -- Table 1 ------------------------------------------------------------------------------------------------
def table1(df: pd.DataFrame, rule: str, with_paper: bool = False, dataset: str | None = None) -> list[Table]:
    """Table 1: accuracy and MAP (audio-visual) or macro-F1 (others) per dataset, marked as in the paper.

    Without ``with_paper``: every dataset side by side (the paper's layout). With it: one table per dataset
    with ours, the paper's value and the difference; rows the paper has and we lack are listed too.
    """
    if df.empty or is_sweep(df):
        return []  # a sweep (several configs per method and seed) has its own tables, not Table 1
    df, note = one_config(df)
    datasets = [dataset] if dataset else D.order_datasets(df["dataset"].tolist())
    ref = D.paper("table1")
    cols, labels = [], list(df[df["dataset"].isin(datasets)]["label"])
    for ds in datasets:
        sub = df[df["dataset"] == ds]
        p = ref[ref["dataset"] == ds]
        if with_paper:
            labels += list(p["label"])
        for metric in ("acc", D.paper_metric(df, ds)):
            pm = p[p["metric"] == metric]
            cols.append(
                Col(
                    D.METRIC_DISPLAY.get(metric, metric),
                    seeds_of(sub, _label, f"test_{metric}[{rule}]"),
                    dict(zip(pm["label"], pm["value"])),
                    dict(zip(pm["label"], pm["dagger"].astype(bool))),
                    group=D.dataset_name(ds) if len(datasets) > 1 or not with_paper else "",
                    dagger=True,
                    significance=True,
                )
            )
    name = D.dataset_name(datasets[0]) if dataset else ", ".join(D.dataset_name(d) for d in datasets)
    key = f"table1_{dataset}" if dataset else "table1"
    title = f"Table 1 ({name})" + (": ours vs the paper" if with_paper else "")
    caption = f"Comparison with the state of the art on {name}. {_rule_caption(rule)} {MARK_NOTE}{note}"
    if with_paper:
        caption += " Paper: IGM (IJCAI 2025) Table 1; Δ = ours − paper."
    return [build(key, title, caption, _rows(labels), cols, with_paper)]


def summary(df: pd.DataFrame, rule: str) -> list[Table]:
    """Per dataset: accuracy, the paper metric and each modality's accuracy (the terminal's table).

    A method run with several configurations (or thread counts) gets one row per configuration, named by what
    differs; rows are averaged over seeds only.
    """
    out = []
    names = variants(df) if "config" in df else {}
    for ds in D.order_datasets(df["dataset"].tolist()):
        sub = df[df["dataset"] == ds]
        metrics = ["acc", D.paper_metric(df, ds)]
        metrics += sorted(
            c[len("test_") : -len(f"[{rule}]")]
            for c in sub.columns
            if c.startswith("test_acc_") and c.endswith(f"[{rule}]") and sub[c].notna().any()
        )

        def key(r: pd.Series, ds: str = ds) -> str:
            v = names.get((ds, str(r["label"]), str(r.get("config"))), "")
            return f"{r['label']}|{v}" if v else str(r["label"])

        cols = [
            Col(
                D.METRIC_DISPLAY.get(m, m.replace("acc_", "Acc ")),
                seeds_of(sub, key, f"test_{m}[{rule}]"),
                dagger=m == "acc",
                significance=m == "acc",
            )
            for m in metrics
        ]
        rows = []
        for r in _rows(list(sub["label"])):
            keys = sorted({key(x) for _, x in sub[sub["label"] == r.key].iterrows()}, key=lambda k: (k != r.key, k))
            for k in keys:
                suffix = f" [{k.split('|', 1)[1]}]" if "|" in k else ""
                rows.append(Row(k, r.label + suffix, r.unimodal, r.proposed))
        caption = f"Test metrics on {D.dataset_name(ds)}. {_rule_caption(rule)} {MARK_NOTE}"
        if any("|" in r.key for r in rows):
            caption += (
                " A method run with several configurations has one row per configuration ([what differs]); "
                "runs of different configurations are never averaged."
            )
        cols.append(Col("Seeds", text={k: str(len(v)) for k, v in cols[0].ours.items()}))
        title = f"Summary ({D.dataset_name(ds)})"
        out.append(build(f"summary_{ds}", title, caption, rows, cols, False))
    return out


# -- Table 2 ------------------------------------------------------------------------------------------------
def ablation_order(labels: list[str]) -> list[str]:
    """The proposed method's ablation rows (``ablation`` marks) in Table 2's order: fewer components first."""
    rows = [x for x in dict.fromkeys(labels) if D.facts(x).ablation]

    def key(x: str) -> tuple[int, tuple[bool, ...]]:
        marks = D.facts(x).ablation
        return (sum(on for _, on in marks), tuple(not on for _, on in marks))

    return sorted(rows, key=key)


def modalities(df: pd.DataFrame, rule: str) -> list[str]:
    suffix = f"[{rule}]"
    ms = [c[len("test_acc_") : -len(suffix)] for c in df.columns if c.startswith("test_acc_") and c.endswith(suffix)]
    return [m for m in ms if df[f"test_acc_{m}{suffix}"].notna().any()]


def table2(df: pd.DataFrame, rule: str) -> list[Table]:
    """Table 2: ablation of SAM and GM (per-modality and multimodal accuracy, percent)."""
    ref = D.paper("table2")
    out = []
    for ds in D.order_datasets(df["dataset"].tolist()):
        labels = ablation_order(list(df.loc[df["dataset"] == ds, "label"]))
        sub = df[(df["dataset"] == ds) & df["label"].isin(labels)]
        if sub["label"].nunique() < 2 or is_sweep(sub):
            continue
        sub, note = one_config(sub)
        p = ref[ref["dataset"] == ds]
        rows = [Row(k, D.display(k)) for k in labels if k in set(sub["label"])]
        components = list(dict.fromkeys(c for k in labels for c, _ in D.facts(k).ablation))
        cols = [
            Col(c, text={k: "✓" if dict(D.facts(k).ablation).get(c) else "✗" for k in labels}) for c in components
        ]
        for m in [*modalities(sub, rule), ""]:
            metric = f"acc_{m}" if m else "acc"
            pm = p[p["metric"] == metric]
            name = D.modality_name(m) if m else "Multi"
            cols.append(
                Col(
                    name,
                    seeds_of(sub, _label, f"test_{metric}[{rule}]"),
                    dict(zip(pm["label"], pm["value"])),
                    kind="pct",
                )
            )
        caption = f"Ablation of SAM and GM on {D.dataset_name(ds)}, accuracy (%). {_rule_caption(rule)}{note}"
        out.append(
            build(f"table2_{ds}", f"Table 2 ({D.dataset_name(ds)})", caption, rows, cols, True, row_header="Variant")
        )
    return out


# -- Table 3 and the stage-by-stage accuracy -------------------------------------------------------------------
def stage_values(art: dict, metric: str = "test_acc") -> list[tuple[str, float | None]]:
    """``[("Initial", x), ("Out1 Audio", x), ...]`` from a run's MIE artefacts (outer iteration = a full cycle)."""
    stages = sorted(art.get("stages") or [], key=lambda s: s.get("stage", 0))
    if not stages:
        return []
    n_mod = len({s.get("modality") for s in stages}) or 1
    out = []
    initial = (art.get("initial") or {}).get(metric)
    out.append(("Initial", initial))
    for i, s in enumerate(stages):
        out.append((f"Out{i // n_mod + 1} {D.modality_name(str(s.get('modality')))}", s.get(metric)))
    return out


def stage_frame(df: pd.DataFrame, hist: D.Histories) -> pd.DataFrame:
    """Long frame (dataset, label, seed, column, position, modality, test_acc, test_acc_<m>...) of all stages."""
    recs = []
    for _, r in df[df["label"].map(D.is_proposed)].iterrows():
        art = hist.artifacts(r["run_id"])
        stages = sorted(art.get("stages") or [], key=lambda s: s.get("stage", 0))
        if not stages:
            continue
        names = stage_values(art)
        base = {"dataset": r["dataset"], "label": r["label"], "seed": int(r["seed"])}
        recs.append({**base, "column": "Initial", "position": 0, "modality": "", **(art.get("initial") or {})})
        for i, (s, (name, _)) in enumerate(zip(stages, names[1:])):
            extra = {k: v for k, v in s.items() if k.startswith(("test_", "val_"))}
            recs.append({**base, "column": name, "position": i + 1, "modality": s.get("modality"), **extra})
    return pd.DataFrame(recs)


def table3(df: pd.DataFrame, hist: D.Histories) -> list[Table]:
    """Table 3: accuracy after each stage (initial, then each modality's stage of each outer iteration)."""
    df, note = one_config(df)
    st = stage_frame(df, hist)
    if st.empty:
        return []
    ref = D.paper("table3")
    out = []
    for ds in D.order_datasets(st["dataset"].tolist()):
        sub = st[st["dataset"] == ds]
        p = ref[ref["dataset"] == ds]
        columns = sub.sort_values("position").drop_duplicates("column")["column"].tolist()
        cols = []
        for c in columns:
            part = sub[sub["column"] == c]
            pc = p[p["column"] == c]
            cols.append(Col(c, seeds_of(part, _label, "test_acc"), dict(zip(pc["label"], pc["value"]))))
        rows = _rows(list(sub["label"]))
        caption = (
            f"Interactive enhancement on {D.dataset_name(ds)}: test accuracy after each stage "
            f"(OutK = K-th outer iteration), mean ± std over seeds. Paper: IGM Table 3.{note}"
        )
        out.append(build(f"table3_{ds}", f"Table 3 ({D.dataset_name(ds)})", caption, rows, cols, True))
    return out


# -- Table 4 ------------------------------------------------------------------------------------------------
def scope_key(v: object) -> str:
    """Canonical ``method.gm_scope`` value: a fraction ("0.3"; "30%" reads as 0.3) or a word ("head")."""
    text = str(v).strip().lower()
    try:
        f = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        return text
    return repr(round(f, 6))


def scope_name(key: str) -> str:
    try:
        return f"{float(key) * 100:g}%"
    except ValueError:
        return "head (default)" if key == "head" else key


def table4(df: pd.DataFrame, rule: str) -> list[Table]:
    """Table 4: scope of GM (share of parameters, deep to shallow); mie_no_gm stands for 0%."""
    if "method.gm_scope" not in df:
        return []
    ref = D.paper("table4")
    ref["key"] = ref["gm_scope"].map(scope_key)
    out = []
    for ds in D.order_datasets(df["dataset"].tolist()):
        sub = df[(df["dataset"] == ds) & (df["label"] == "mie")].copy()
        sub["key"] = sub["method.gm_scope"].map(scope_key)
        if sub["key"].nunique() < 2:
            continue  # not a scope sweep
        no_gm = df[(df["dataset"] == ds) & (df["label"] == "mie_no_gm")].copy()
        if len(no_gm) and "0.0" not in set(sub["key"]):
            sub = pd.concat([sub, no_gm.assign(key="0.0")])
        sub, note = one_config(sub, ("dataset", "key"))

        def order(k: str) -> tuple[int, float]:
            try:
                return (0, -float(k))
            except ValueError:
                return (1, 0.0)

        keys = sorted(set(sub["key"]), key=order)
        p = ref[ref["dataset"] == ds]
        cols = []
        for metric in ("acc", D.paper_metric(df, ds)):
            pm = p[p["metric"] == metric]
            cols.append(
                Col(
                    D.METRIC_DISPLAY.get(metric, metric),
                    seeds_of(sub, lambda r: r["key"], f"test_{metric}[{rule}]"),
                    dict(zip(pm["key"], pm["value"])),
                    kind="pct",
                )
            )
        rows = [Row(k, scope_name(k)) for k in keys]
        caption = (
            f"Scope of GM on {D.dataset_name(ds)} (share of parameters, deep to shallow). {_rule_caption(rule)}{note}"
        )
        out.append(
            build(f"table4_{ds}", f"Table 4 ({D.dataset_name(ds)})", caption, rows, cols, True, row_header="Scope")
        )
    return out


# -- Figure 3 -----------------------------------------------------------------------------------------------
def sensitivity_rows(df: pd.DataFrame, param: str) -> pd.DataFrame:
    """The runs of the ``param`` grid: ``mie`` rows whose other parameter sits at its reference value (the
    value that co-occurs with the most distinct values of ``param``)."""
    other = {"tau": "rho", "rho": "tau"}[param]
    pc, oc = f"method.{param}", f"method.{other}"
    if pc not in df or oc not in df:
        return df.iloc[0:0]
    sub = df[df["label"] == "mie"]
    if sub.empty or sub[pc].nunique() < 2:
        return sub.iloc[0:0]
    ref = sub.groupby(oc)[pc].nunique().idxmax()
    return one_config(sub[np.isclose(sub[oc].astype(float), float(ref), rtol=1e-6, atol=0.0)], ("dataset", pc))[0]


def fig3(df: pd.DataFrame, rule: str) -> list[Table]:
    """Figure 3 as tables: accuracy and the paper metric against tau and against rho."""
    ref = D.paper("fig3_sensitivity")
    out = []
    for ds in D.order_datasets(df["dataset"].tolist()):
        for param, sym in (("tau", "τ"), ("rho", "ρ")):
            sub = sensitivity_rows(df[df["dataset"] == ds], param)
            if sub.empty:
                continue
            values = sorted(set(sub[f"method.{param}"].astype(float)))
            p = ref[(ref["dataset"] == ds) & (ref["param"] == param)]

            def key(r: pd.Series, values: list[float] = values, param: str = param) -> str:
                return f"{float(r[f'method.{param}']):g}"

            cols = []
            for metric in ("acc", D.paper_metric(df, ds)):
                pm = p[p["metric"] == metric]
                cols.append(
                    Col(
                        D.METRIC_DISPLAY.get(metric, metric),
                        seeds_of(sub, key, f"test_{metric}[{rule}]"),
                        {f"{float(v):g}": x for v, x in zip(pm["value"], pm["paper_value"])},
                    )
                )
            rows = [Row(f"{v:g}", f"{v:g}") for v in values]
            caption = f"Sensitivity to {sym} on {D.dataset_name(ds)} (IGM Figure 3). {_rule_caption(rule)}"
            out.append(
                build(
                    f"fig3_{param}_{ds}",
                    f"Figure 3, {sym} ({D.dataset_name(ds)})",
                    caption,
                    rows,
                    cols,
                    True,
                    row_header=sym,
                )
            )
    return out


# -- Figure 5 -----------------------------------------------------------------------------------------------
PAPER_LAYER = {"fc1": "D×256", "fc2": "256×64", "fc3": "64×c"}


def singular_frame(df: pd.DataFrame, hist: D.Histories) -> pd.DataFrame:
    """(dataset, label, seed, modality, layer, mean singular value) of every run with the artefact."""
    recs = []
    for _, r in df.iterrows():
        sv = hist.artifacts(r["run_id"]).get("singular_values") or {}
        for m, layers in sv.items():
            for layer, values in layers.items():
                if values:
                    recs.append(
                        {
                            "dataset": r["dataset"],
                            "label": r["label"],
                            "seed": int(r["seed"]),
                            "modality": m,
                            "layer": layer,
                            "value": float(np.mean(values)),
                        }
                    )
    return pd.DataFrame(recs)


def fig5a(df: pd.DataFrame, hist: D.Histories) -> list[Table]:
    """Figure 5a: average singular value per head layer (mean over modalities, then over seeds)."""
    sv = singular_frame(one_config(df)[0], hist)
    if sv.empty:
        return []
    ref = D.paper("fig5a_singular_values")
    out = []
    for ds in D.order_datasets(sv["dataset"].tolist()):
        sub = sv[sv["dataset"] == ds].groupby(["label", "seed", "layer"], as_index=False)["value"].mean()
        p = ref[ref["dataset"] == ds]
        layers = sorted(set(sub["layer"]), key=lambda x: (x not in PAPER_LAYER, x))
        cols = []
        for layer in layers:
            part = sub[sub["layer"] == layer]
            pl = p[p["layer"] == layer]
            name = f"{layer} ({PAPER_LAYER[layer]})" if layer in PAPER_LAYER else layer
            cols.append(
                Col(name, seeds_of(part, _label, "value"), dict(zip(pl["label"], pl["value"])), kind="num1", best=False)
            )
        caption = (
            f"Average singular value per head layer on {D.dataset_name(ds)} (mean over modalities and seeds; "
            "smaller = flatter). Paper: IGM Figure 5a, read off the figure (±0.5)."
        )
        out.append(
            build(f"fig5a_{ds}", f"Figure 5a ({D.dataset_name(ds)})", caption, _rows(list(sub["label"])), cols, True)
        )
    return out


def clip_runs(df: pd.DataFrame) -> pd.DataFrame:
    if "model.backbones" not in df:
        return df.iloc[0:0]
    return df[df["model.backbones"].astype(str).str.contains("clip_", regex=False)]


def fig5b(df: pd.DataFrame, rule: str) -> list[Table]:
    """Figure 5b: CLIP encoders (runs whose model.backbones use clip_*), multimodal and per-modality accuracy."""
    clip, note = one_config(clip_runs(df))
    if clip.empty:
        return []
    ref = D.paper("fig5b_clip")
    out = []
    for ds in D.order_datasets(clip["dataset"].tolist()):
        sub = clip[clip["dataset"] == ds]
        p = ref[ref["dataset"] == ds]
        cols = []
        for m in ["", *modalities(sub, rule)]:
            metric = f"acc_{m}" if m else "acc"
            pm = p[p["metric"] == metric]
            cols.append(
                Col(
                    D.modality_name(m) if m else "Multi",
                    seeds_of(sub, _label, f"test_{metric}[{rule}]"),
                    dict(zip(pm["label"], pm["value"])),
                )
            )
        rows = [Row(r.key, "CLIP" if r.key == "joint" else f"CLIP+{r.label}") for r in _rows(list(sub["label"]))]
        caption = (
            f"CLIP encoders on {D.dataset_name(ds)}, accuracy. {_rule_caption(rule)} Paper: IGM Figure 5b (±.001)."
        )
        caption += note
        out.append(build(f"fig5b_{ds}", f"Figure 5b ({D.dataset_name(ds)})", caption, rows, cols, True))
    return out


def fig5c(df: pd.DataFrame, rule: str) -> list[Table]:
    """Figure 5c: training time (minutes, wall clock) against accuracy, per dataset with two or more methods."""
    if "wall_time_s" not in df or is_sweep(df):
        return []
    df, note = one_config(df)
    ref = D.paper("fig5c_time")
    out = []
    for ds in D.order_datasets(df["dataset"].tolist()):
        sub = df[(df["dataset"] == ds)].assign(minutes=lambda x: x["wall_time_s"] / 60)
        if sub["label"].nunique() < 2:
            continue
        p = ref[ref["dataset"] == ds]
        cols = [
            Col(
                "Time (min)",
                seeds_of(sub, _label, "minutes"),
                dict(zip(p["label"], p["time_min"])),
                kind="num1",
                best=False,
            ),
            Col("Acc", seeds_of(sub, _label, f"test_acc[{rule}]"), dict(zip(p["label"], p["acc"]))),
        ]
        caption = (
            f"Training time against accuracy on {D.dataset_name(ds)}. {_rule_caption(rule)} Paper: IGM Figure 5c "
            "(RTX 3090; the paper's caption says hours, the values read as minutes); hardware differs, compare ratios."
            + note
        )
        out.append(
            build(f"fig5c_{ds}", f"Figure 5c ({D.dataset_name(ds)})", caption, _rows(list(sub["label"])), cols, True)
        )
    return out
