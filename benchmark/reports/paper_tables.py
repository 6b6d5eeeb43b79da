"""The paper's tables 1-4 and the per-dataset summary, ours beside the paper's numbers.

Every builder takes the finished runs of a result CSV and returns :class:`~benchmark.reports.typeset.Table`
objects (an empty list when the CSV holds nothing for that artefact).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.reports import data as D
from benchmark.reports.configs import is_sweep, one_config, variants
from benchmark.reports.layout import Col, Row, build, by_label, method_rows, rule_caption, seeds_of
from benchmark.reports.marks import MARK_NOTE
from benchmark.reports.typeset import Table


# -- the imbalance column ---------------------------------------------------------------------------------
IMBALANCE_NOTE = (
    "Imb. (m) = the weak modality m's accuracy inside the model divided by the same encoder trained alone "
    "(m = the modality whose unimodal run is least accurate; < 1: the model under-trains it)."
)


def weak_modality(sub: pd.DataFrame, rule: str) -> str | None:
    """The modality whose unimodal run is least accurate on average (None without unimodal runs)."""
    col = f"test_acc[{rule}]"
    means = {}
    for label, part in sub[sub["label"].map(lambda x: str(x).startswith("unimodal_"))].groupby("label"):
        vals = part[col].dropna() if col in part else []
        if len(vals):
            means[str(label)[len("unimodal_") :]] = float(np.mean(vals))
    return min(means, key=means.get) if len(means) >= 2 else None


def imbalance(df: pd.DataFrame, rule: str) -> pd.Series:
    """Per run: the weak modality's accuracy inside the model divided by the same encoder trained alone.

    The weak modality of a dataset is the one whose ``unimodal`` runs are least accurate; the denominator is
    the mean over seeds of that unimodal run's test accuracy (rule ``rule``). NaN where a dataset has no
    unimodal runs of every modality or the run has no accuracy of that modality.
    """
    out = pd.Series(np.nan, index=df.index, dtype=float)
    for _, sub in df.groupby("dataset"):
        weak = weak_modality(sub, rule)
        col = f"test_acc_{weak}[{rule}]"
        if weak is None or col not in sub:
            continue
        alone = sub.loc[sub["label"] == f"unimodal_{weak}", f"test_acc[{rule}]"].mean()
        if D.finite(alone) and alone > 0:
            out.loc[sub.index] = sub[col].astype(float) / float(alone)
    return out


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
                    seeds_of(sub, by_label, f"test_{metric}[{rule}]"),
                    dict(zip(pm["label"], pm["value"])),
                    dict(zip(pm["label"], pm["dagger"].astype(bool))),
                    group=D.dataset_name(ds) if len(datasets) > 1 or not with_paper else "",
                    dagger=True,
                    significance=True,
                )
            )
        weak = weak_modality(sub, rule)
        if weak is not None:
            cols.append(
                Col(
                    f"Imb. ({D.modality_name(weak)})",
                    seeds_of(sub.assign(_imb=imbalance(sub, rule)), by_label, "_imb"),
                    group=D.dataset_name(ds) if len(datasets) > 1 or not with_paper else "",
                    best=False,
                )
            )
    name = D.dataset_name(datasets[0]) if dataset else ", ".join(D.dataset_name(d) for d in datasets)
    key = f"table1_{dataset}" if dataset else "table1"
    title = f"Table 1 ({name})" + (": ours vs the paper" if with_paper else "")
    caption = f"Comparison with the state of the art on {name}. {rule_caption(rule)} {MARK_NOTE}{note}"
    if any(c.name.startswith("Imb.") for c in cols):
        caption += f" {IMBALANCE_NOTE}"
    if with_paper:
        caption += " Paper: IGM (IJCAI 2025) Table 1; Δ = ours − paper."
    return [build(key, title, caption, method_rows(labels), cols, with_paper)]


def summary(df: pd.DataFrame, rule: str) -> list[Table]:
    """Per dataset: accuracy, the paper metric and each modality's accuracy (the terminal's table).

    A method run with several configurations (or thread counts) gets one row per configuration, named by what
    differs; rows are averaged over seeds only.
    """
    out = []
    names = variants(df) if "config" in df else {}
    for ds, sub in D.by_dataset(df):
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
        for r in method_rows(list(sub["label"])):
            keys = sorted({key(x) for _, x in sub[sub["label"] == r.key].iterrows()}, key=lambda k: (k != r.key, k))
            for k in keys:
                suffix = f" [{k.split('|', 1)[1]}]" if "|" in k else ""
                rows.append(Row(k, r.label + suffix, r.unimodal, r.proposed))
        weak = weak_modality(sub, rule)
        if weak is not None:
            imb = seeds_of(sub.assign(_imb=imbalance(sub, rule)), key, "_imb")
            cols.append(Col(f"Imb. ({D.modality_name(weak)})", imb, best=False))
        caption = f"Test metrics on {D.dataset_name(ds)}. {rule_caption(rule)} {MARK_NOTE}"
        if weak is not None:
            caption += f" {IMBALANCE_NOTE}"
        if any("|" in r.key for r in rows):
            caption += (
                " A method run with several configurations has one row per configuration ([what differs]); "
                "runs of different configurations are never averaged."
            )
        cols.append(Col("Seeds", text={k: str(len(v)) for k, v in cols[0].ours.items()}))
        title = f"Summary ({D.dataset_name(ds)})"
        out.append(build(f"summary_{ds}", title, caption, rows, cols, False))
    return out


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
        cols = [Col(c, text={k: "✓" if dict(D.facts(k).ablation).get(c) else "✗" for k in labels}) for c in components]
        for m in [*modalities(sub, rule), ""]:
            metric = f"acc_{m}" if m else "acc"
            pm = p[p["metric"] == metric]
            name = D.modality_name(m) if m else "Multi"
            cols.append(
                Col(
                    name,
                    seeds_of(sub, by_label, f"test_{metric}[{rule}]"),
                    dict(zip(pm["label"], pm["value"])),
                    kind="pct",
                )
            )
        caption = f"Ablation of SAM and GM on {D.dataset_name(ds)}, accuracy (%). {rule_caption(rule)}{note}"
        out.append(
            build(f"table2_{ds}", f"Table 2 ({D.dataset_name(ds)})", caption, rows, cols, True, row_header="Variant")
        )
    return out


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
    for ds, sub in D.by_dataset(st):
        p = ref[ref["dataset"] == ds]
        columns = sub.sort_values("position").drop_duplicates("column")["column"].tolist()
        cols = []
        for c in columns:
            part = sub[sub["column"] == c]
            pc = p[p["column"] == c]
            cols.append(Col(c, seeds_of(part, by_label, "test_acc"), dict(zip(pc["label"], pc["value"]))))
        rows = method_rows(list(sub["label"]))
        caption = (
            f"Interactive enhancement on {D.dataset_name(ds)}: test accuracy after each stage "
            f"(OutK = K-th outer iteration), mean ± std over seeds. Paper: IGM Table 3.{note}"
        )
        out.append(build(f"table3_{ds}", f"Table 3 ({D.dataset_name(ds)})", caption, rows, cols, True))
    return out


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
            f"Scope of GM on {D.dataset_name(ds)} (share of parameters, deep to shallow). {rule_caption(rule)}{note}"
        )
        out.append(
            build(f"table4_{ds}", f"Table 4 ({D.dataset_name(ds)})", caption, rows, cols, True, row_header="Scope")
        )
    return out
