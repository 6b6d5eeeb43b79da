"""The paper's figures as PNG and PDF (matplotlib, Agg backend): Figure 3's sensitivity lines, 5a-c, per-modality
accuracy curves over epochs, and MIE's accuracy after each stage."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmark.reports import data as D  # noqa: E402
from benchmark.reports import figure_tables as FT  # noqa: E402
from benchmark.reports import layout as L  # noqa: E402
from benchmark.reports import paper_tables as PT  # noqa: E402
from benchmark.reports import configs as C  # noqa: E402

plt.rcParams.update({"figure.dpi": 110, "font.size": 8, "axes.grid": True, "grid.alpha": 0.3})


def save(fig: plt.Figure, out_dir: Path, name: str, tight: bool = True) -> list[Path]:
    """Write ``<name>.png`` and ``<name>.pdf``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    if tight:
        fig.tight_layout()
    for p in paths:
        fig.savefig(p, bbox_inches="tight")  # keep legends placed outside the axes
    plt.close(fig)
    return paths


def _mean_std(values: L.Seeds) -> tuple[float, float]:
    m, s = L.mean_std(values)
    return (np.nan if m is None else m), (0.0 if s is None else s)


def sensitivity(df: pd.DataFrame, rule: str, out_dir: Path) -> list[Path]:
    """Figure 3: accuracy and the paper metric against tau and rho (categorical axes), ours and the paper's."""
    ref = D.paper("fig3_sensitivity")
    written = []
    for ds in D.order_datasets(df["dataset"].tolist()):
        grids = {p: FT.sensitivity_rows(df[df["dataset"] == ds], p) for p in ("tau", "rho")}
        grids = {p: g for p, g in grids.items() if not g.empty}
        if not grids:
            continue
        fig, axes = plt.subplots(1, len(grids), figsize=(4.2 * len(grids), 3.2), squeeze=False)
        for ax, (param, sub) in zip(axes[0], grids.items()):
            grid = ref[(ref["dataset"] == ds) & (ref["param"] == param)]["value"].astype(float)
            values = sorted({float(f"{v:g}") for v in [*sub[f"method.{param}"].astype(float), *grid]})
            x = np.arange(len(values))
            for metric, color in (("acc", "C0"), (D.paper_metric(df, ds), "C1")):
                name = D.METRIC_DISPLAY.get(metric, metric)
                by = L.seeds_of(sub, lambda r, p=param: f"{float(r[f'method.{p}']):g}", f"test_{metric}[{rule}]")
                ms = [_mean_std(by.get(f"{v:g}", {})) for v in values]
                ax.errorbar(
                    x, [m for m, _ in ms], yerr=[s for _, s in ms], marker="o", color=color, label=f"{name} (ours)"
                )
                p = ref[(ref["dataset"] == ds) & (ref["param"] == param) & (ref["metric"] == metric)]
                lookup = {f"{float(v):g}": y for v, y in zip(p["value"], p["paper_value"])}
                if lookup:
                    py = [lookup.get(f"{v:g}", np.nan) for v in values]
                    ax.plot(x, py, "--", marker="s", color=color, alpha=0.6, label=f"{name} (paper)")
            ax.set_xticks(x, [f"{v:g}" for v in values])
            ax.set_xlabel({"tau": "τ", "rho": "ρ"}[param])
            ax.set_title(f"{D.dataset_name(ds)}: sensitivity to {({'tau': 'τ', 'rho': 'ρ'})[param]}")
            ax.legend(fontsize=6)
        written += save(fig, out_dir, f"fig3_sensitivity_{ds}")
    return written


def singular_values(df: pd.DataFrame, hist: D.Histories, out_dir: Path) -> list[Path]:
    """Figure 5a: grouped bars of the average singular value per head layer, ours (and the paper's, hatched)."""
    sv = FT.singular_frame(df, hist)
    if sv.empty:
        return []
    ref = D.paper("fig5a_singular_values")
    written = []
    for ds in D.order_datasets(sv["dataset"].tolist()):
        sub, layers = FT.layer_means(sv, ds)
        labels = D.order_labels(list(sub["label"]))
        p = ref[ref["dataset"] == ds]
        series = [(lab, "ours") for lab in labels] + [(lab, "paper") for lab in labels if lab in set(p["label"])]
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(layers) * max(1, len(series)) / 2), 3.2))
        width = 0.8 / len(series)
        for i, (lab, src) in enumerate(series):
            if src == "ours":
                ms = [_mean_std(L.seeds_of(sub[sub["layer"] == la], L.by_label, "value").get(lab, {})) for la in layers]
                ys, es = [m for m, _ in ms], [s for _, s in ms]
            else:
                pl = p[p["label"] == lab]
                lookup = dict(zip(pl["layer"], pl["value"]))
                ys, es = [lookup.get(la, np.nan) for la in layers], None
            ax.bar(
                np.arange(len(layers)) + i * width,
                ys,
                width,
                yerr=es,
                label=f"{D.display(lab)} ({src})",
                hatch="//" if src == "paper" else None,
                alpha=0.6 if src == "paper" else 1.0,
            )
        ax.set_xticks(np.arange(len(layers)) + 0.4 - width / 2, [f"{la}" for la in layers])
        ax.set_ylabel("average singular value")
        ax.set_title(f"{D.dataset_name(ds)}: singular values per head layer")
        ax.legend(fontsize=6)
        written += save(fig, out_dir, f"fig5a_singular_values_{ds}")
    return written


def bars(table_obj, out_dir: Path, name: str, ylabel: str) -> list[Path]:
    """Grouped bars of a table's 'ours' (and 'paper') columns; used for Figure 5b."""
    cols = [(i, c) for i, c in enumerate(table_obj.columns) if c[-1] in ("", "ours", "paper")]
    metrics = list(dict.fromkeys(c[1] for _, c in cols))
    series = []
    for label, cells in table_obj.rows:
        for src in ("ours", "paper"):
            ys = []
            for m in metrics:
                idx = [i for i, c in cols if c[1] == m and (c[2] == src or (src == "ours" and c[2] == ""))]
                ys.append(cells[idx[0]].value if idx and cells[idx[0]].value is not None else np.nan)
            if not all(np.isnan(ys)):
                series.append((f"{label} ({src})", ys, src))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(series) * len(metrics)), 3.2))
    width = 0.8 / max(1, len(series))
    for i, (lab, ys, src) in enumerate(series):
        ax.bar(np.arange(len(metrics)) + i * width, ys, width, label=lab, hatch="//" if src == "paper" else None)
    ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, metrics)
    ax.set_ylabel(ylabel)
    ax.set_title(table_obj.title)
    ax.legend(fontsize=6)
    return save(fig, out_dir, name)


def time_vs_accuracy(df: pd.DataFrame, rule: str, out_dir: Path) -> list[Path]:
    """Figure 5c: wall-clock minutes against accuracy, ours (left) and the paper's (right, crema_d)."""
    if C.is_sweep(df):
        return []
    df = C.one_config(df)[0]
    ref = D.paper("fig5c_time")
    written = []
    for ds, sub in D.by_dataset(df):
        if sub["label"].nunique() < 2 or "wall_time_s" not in sub:
            continue
        g = sub.groupby("label").agg(t=("wall_time_s", "mean"), acc=(f"test_acc[{rule}]", "mean"))
        p = ref[ref["dataset"] == ds]
        panels = [("ours", g["t"] / 60, g["acc"], g.index)]
        if len(p):
            panels.append(("paper", p["time_min"], p["acc"], p["label"]))
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False)
        for ax, (src, xs, ys, labels) in zip(axes[0], panels):
            ax.scatter(xs, ys, s=18)
            for x, y, lab in zip(xs, ys, labels):
                ax.annotate(D.display(str(lab)), (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
            ax.set_xlabel("training time (min)")
            ax.set_ylabel("accuracy")
            ax.set_title(f"{D.dataset_name(ds)} ({src})")
        written += save(fig, out_dir, f"fig5c_time_{ds}")
    return written


def _history_frame(df: pd.DataFrame, hist: D.Histories) -> pd.DataFrame:
    recs = []
    for _, r in df.iterrows():
        h = hist.get(r["run_id"])
        for i, e in enumerate((h or {}).get("history") or []):
            test = e.get("test") or {}
            rec = {"dataset": r["dataset"], "label": r["label"], "seed": r["seed"], "epoch": e.get("epoch", i + 1)}
            rec.update({k: v for k, v in test.items() if k == "acc" or k.startswith("acc_")})
            recs.append(rec)
    return pd.DataFrame(recs)


def _lines(
    frame: pd.DataFrame, x: str, metrics: list[str], labels: list[str], title: str, xticks: list[str] | None = None
) -> plt.Figure:
    """One panel per metric (fused first, then each modality), one line per method (mean over seeds)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.0 * len(metrics) + 1.6, 2.8), squeeze=False, sharey=True)
    for ax, m in zip(axes[0], metrics):
        for i, lab in enumerate(labels):
            g = frame[frame["label"] == lab].groupby(x)[m].mean()
            if g.notna().any():
                style = "-" if i < 10 else "--" if i < 20 else ":"
                ax.plot(g.index, g.values, style, marker=".", color=f"C{i % 10}", lw=1.2, label=D.display(lab))
        short = m.removeprefix("test_")
        ax.set_title("fused" if short == "acc" else D.modality_name(short[len("acc_") :]))
        if xticks is not None:
            ax.set_xticks(range(len(xticks)), xticks, rotation=45, ha="right")
        else:
            ax.set_xlabel(x)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[0][0].set_ylabel("test accuracy")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        loc="center left",
        bbox_to_anchor=(1 - 1.5 / fig.get_figwidth(), 0.5),
        fontsize=6,
        frameon=False,
        ncol=2 if len(names) > 12 else 1,
    )
    fig.suptitle(title)
    fig.subplots_adjust(left=0.06, right=1 - 1.5 / fig.get_figwidth(), bottom=0.3 if xticks else 0.17, top=0.82)
    return fig


def curves(df: pd.DataFrame, hist: D.Histories, out_dir: Path) -> list[Path]:
    """Test accuracy over epochs: one panel for the fused prediction and one per modality, a line per method."""
    hf = _history_frame(df, hist)
    if hf.empty:
        return []
    written = []
    for ds, sub in D.by_dataset(hf):
        metrics = ["acc"] + sorted(c for c in sub.columns if c.startswith("acc_") and sub[c].notna().any())
        title = f"{D.dataset_name(ds)}: test accuracy over epochs (mean over seeds)"
        fig = _lines(sub, "epoch", metrics, D.order_labels(list(sub["label"])), title)
        written += save(fig, out_dir, f"curves_{ds}", tight=False)
    return written


def stages(df: pd.DataFrame, hist: D.Histories, out_dir: Path) -> list[Path]:
    """MIE family: test accuracy (fused and per modality) after each stage, mean over seeds."""
    st = PT.stage_frame(df, hist)
    if st.empty:
        return []
    written = []
    for ds, sub in D.by_dataset(st):
        metrics = ["test_acc"] + sorted(c for c in sub.columns if c.startswith("test_acc_") and sub[c].notna().any())
        ticks = sub.sort_values("position").drop_duplicates("position")["column"].tolist()
        title = f"{D.dataset_name(ds)}: accuracy after each MIE stage (mean over seeds)"
        fig = _lines(sub, "position", metrics, D.order_labels(list(sub["label"])), title, xticks=ticks)
        written += save(fig, out_dir, f"stages_{ds}", tight=False)
    return written
