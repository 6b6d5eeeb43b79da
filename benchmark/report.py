"""Summary tables from a result CSV: Markdown and LaTeX (pandas Styler, booktabs). Never imports torch.

The summary has one row per method label and dataset, with mean and standard deviation over seeds of the
test accuracy, MAP and macro-F1 and each modality's accuracy, all under one model-selection rule.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmark.results import atomic_write_text

RULE_NAMES = {
    "best_val": "best validation epoch",
    "last": "last epoch",
    "best_test": "best test epoch (official-code protocol)",
}


def summary_frame(df: pd.DataFrame, rule: str = "best_val") -> pd.DataFrame:
    """Mean/std over seeds per (dataset, label) of the test metrics under ``rule``."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    if ok.empty:
        return pd.DataFrame()
    metric_cols = [c for c in ok.columns if c.startswith("test_") and c.endswith(f"[{rule}]")]
    names = [c[len("test_") : -len(f"[{rule}]")] for c in metric_cols]
    order = ["acc", "map", "macro_f1"] + sorted(n for n in names if n.startswith("acc_"))
    cols = [f"test_{n}[{rule}]" for n in order if f"test_{n}[{rule}]" in metric_cols]
    grouped = ok.groupby(["dataset", "label"], sort=True)[cols]
    mean, std, count = grouped.mean(), grouped.std(ddof=1), grouped.size()
    out = pd.DataFrame(index=mean.index)
    for c in cols:
        short = c[len("test_") : -len(f"[{rule}]")]
        out[short] = mean[c]
        out[f"{short}_std"] = std[c]
    out["seeds"] = count
    return out.reset_index()


def _cell(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    text = f"{mean:.4f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {std:.4f}"
    return text


def display_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """Human-readable cells 'mean ± std' (std only with several seeds)."""
    metrics = [c for c in summary.columns if c not in {"dataset", "label", "seeds"} and not c.endswith("_std")]
    rows = []
    for _, r in summary.iterrows():
        row = {"dataset": r["dataset"], "method": r["label"]}
        for m in metrics:
            row[m] = _cell(r[m], r.get(f"{m}_std"))
        row["seeds"] = int(r["seeds"])
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def to_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table through pandas Styler; compiles inside any document that loads booktabs."""
    shown = table.copy()
    shown.columns = [_latex_escape(str(c)) for c in shown.columns]
    for c in shown.columns:
        shown[c] = shown[c].map(lambda v: _latex_escape(str(v)).replace("±", r"$\pm$"))
    styler = shown.style.hide(axis="index")
    return styler.to_latex(
        hrules=True,
        caption=_latex_escape(caption),
        label=label,
        position="t",
        column_format="l" * len(shown.columns),
    )


def render_summary(csv_path: Path, out_dir: Path, name: str, rule: str = "best_val") -> list[Path]:
    """Write ``<out_dir>/<name>.md`` and ``<name>.tex`` from the CSV; returns the paths written."""
    df = pd.read_csv(csv_path)
    summary = summary_frame(df, rule)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = df[df["status"] == "failed"] if "status" in df else df.iloc[0:0]
    caption = f"Suite {name}: test metrics at the {RULE_NAMES[rule]}, mean over seeds"
    if summary.empty:
        table = pd.DataFrame({"note": ["no finished runs"]})
    else:
        table = display_frame(summary)
    md = f"# {caption}\n\n" + to_markdown(table)
    if len(failed):
        md += "\nFailed runs:\n\n" + "".join(f"- {r.run_id}: {r.error}\n" for r in failed.itertuples())
    md_path, tex_path = out_dir / f"{name}.md", out_dir / f"{name}.tex"
    atomic_write_text(md_path, md)
    atomic_write_text(tex_path, to_latex(table, caption, f"tab:{name}"))
    return [md_path, tex_path]
