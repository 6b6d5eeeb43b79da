"""Render every artefact a result CSV supports: LaTeX (booktabs) + Markdown tables, PNG + PDF figures, one
Markdown report and one standalone LaTeX document per suite. Never imports torch."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from benchmark.reports import claims as C
from benchmark.reports import data as D
from benchmark.reports import figure_tables as FT
from benchmark.reports import paper_tables as PT
from benchmark.reports.configs import one_config
from benchmark.reports.typeset import Table, latex_document, latex_escape, to_latex, to_markdown, to_rich
from benchmark.results import CorruptCSVError, atomic_write_text, check_csv


def build_tables(csv_path: Path, rule: str = "best_val", note: str = "") -> list[Table]:
    """Every table the CSV supports, in the paper's order (empty when no run finished).

    ``note`` (the suite's :attr:`~benchmark.suites.Suite.report_note`) is added to the captions of the summary
    and Table 1, where a reader compares methods.
    """
    if rule not in D.RULES:
        raise ValueError(f"unknown selection rule {rule!r}; use one of {', '.join(D.RULES)}")
    df = D.load_results(csv_path)
    if df.empty:
        return []
    hist = D.Histories(Path(csv_path).parent)
    ranked = PT.summary(df, rule) + PT.table1(df, rule)
    paper_datasets = set(D.paper("table1")["dataset"])
    for ds in D.order_datasets(df["dataset"].tolist()):
        if ds in paper_datasets:
            ranked += PT.table1(df, rule, with_paper=True, dataset=ds)
    if note:
        for t in ranked:
            t.caption = f"{note} {t.caption}"
    out = list(ranked)
    out += PT.table2(df, rule) + PT.table3(df, hist) + PT.table4(df, rule) + FT.fig3(df, rule)
    out += FT.fig5a(df, hist) + FT.fig5b(df, rule) + FT.fig5c(df, rule)
    return out


def build_claims(csv_path: Path, rule: str = "best_val") -> list[Table]:
    """The claims check (one table per dataset; :mod:`benchmark.reports.claims`)."""
    df = D.load_results(csv_path)
    return C.build_claims(df, D.Histories(Path(csv_path).parent), rule)


def suite_note(name: str) -> str:
    """The registered suite's ``report_note`` ("" for a CSV that is no registered suite). Suites are plain data:
    loading them imports no torch."""
    from benchmark.registry import SUITES

    return getattr(SUITES.get(name), "report_note", "") if name in SUITES else ""


def build_figures(csv_path: Path, fig_dir: Path, tables: list[Table], rule: str = "best_val") -> list[Path]:
    from benchmark.reports import figures as F

    df = D.load_results(csv_path)
    if df.empty:
        return []
    hist = D.Histories(Path(csv_path).parent)
    one = one_config(df)[0]  # one configuration per method: figures average over seeds only
    out = F.sensitivity(df, rule, fig_dir) + F.singular_values(one, hist, fig_dir)
    for t in tables:
        if t.key.startswith("fig5b_"):
            out += F.bars(t, fig_dir, f"fig5b_clip_{t.key[len('fig5b_') :]}", "accuracy")
    out += F.time_vs_accuracy(df, rule, fig_dir) + F.curves(one, hist, fig_dir) + F.stages(one, hist, fig_dir)
    return out


def render_report(
    csv_path: str | Path,
    out_dir: str | Path,
    name: str,
    rule: str = "best_val",
    console: Any = None,
    figures: bool = True,
) -> list[Path]:
    """Render the suite ``name`` from ``csv_path`` into ``<out_dir>/<name>/``.

    Writes one ``<key>.tex`` (a booktabs table float) and ``<key>.md`` per table, ``figures/*.png|pdf``,
    ``report.md`` (every table and figure) and ``report.tex`` (a standalone document that inputs every table
    and includes every figure). Returns the paths written, ``report.md`` first. With a rich ``console``, the
    summary tables are printed too.
    """
    csv_path, root = Path(csv_path), Path(out_dir) / name
    note = suite_note(name)
    tables = build_tables(csv_path, rule, note)
    claims = build_claims(csv_path, rule) if tables else []
    failed = D.failed_runs(csv_path)
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for t in tables:
        for suffix, text in ((".tex", to_latex(t)), (".md", to_markdown(t))):
            path = root / f"{t.key}{suffix}"
            atomic_write_text(path, text)
            written.append(path)
    if claims:
        claims_md = f"# Claims check: suite {name}\n\n" + "\n".join(to_markdown(t) for t in claims)
        claims_tex = "\n".join(to_latex(t, wide=1) for t in claims)
        for path, text in ((root / "claims.md", claims_md), (root / "claims.tex", claims_tex)):
            atomic_write_text(path, text)
            written.append(path)
    figs = build_figures(csv_path, root / "figures", tables, rule) if figures else []
    written += figs

    md = [f"# Suite {name}\n", f"Source: `{csv_path}`; selection rule `{rule}` ({D.RULE_NAMES[rule]}).\n"]
    if note:
        md.append(f"**Note.** {note}\n")
    if not tables:
        md.append("No finished runs yet.\n")
    md += [to_markdown(t) for t in tables]
    md += [to_markdown(t) for t in claims]
    md += [f"![{p.stem}](figures/{p.name})\n" for p in figs if p.suffix == ".png"]
    if len(failed):
        md.append("## Failed runs\n\n" + "".join(f"- `{r.run_id}`: {r.error}\n" for r in failed.itertuples()))
    parts = [f"\\textbf{{Note.}} {latex_escape(note)}\n"] if note else []
    parts += [f"\\input{{{t.key}}}" for t in tables] or [r"No finished runs yet."]
    if claims:
        parts.append("\\clearpage\n\\input{claims}")
    parts += [
        "\\begin{figure}[htbp]\\centering\n"
        f"\\includegraphics[width=0.9\\linewidth]{{figures/{p.name}}}\n\\caption{{{latex_escape(p.stem)}}}\n"
        "\\end{figure}\n\\clearpage"
        for p in figs
        if p.suffix == ".pdf"
    ]
    report_md, report_tex = root / "report.md", root / "report.tex"
    atomic_write_text(report_md, "\n".join(md))
    atomic_write_text(report_tex, latex_document(parts, f"mmbalance-bench: suite {name}"))
    if console is not None:
        if note:
            console.print(f"[bold]Note.[/bold] {note}")
        for t in tables:
            if t.key.startswith("summary_"):
                console.print(to_rich(t))
        for t in claims:
            verdicts = [cells[-1].text for _, cells in t.rows]
            counts = ", ".join(f"{verdicts.count(v)} {v}" for v in C.VERDICTS if v in verdicts)
            console.print(f"{t.title}: {counts} ({root / 'claims.md'})")
    return [report_md, report_tex, *written]


def report_only(results: Path, reports: Path, suite: str | None = None, rule: str = "best_val") -> int:
    """``run_all.py --report-only``: render ``results/<suite>.csv`` (every ``results/*.csv`` without a suite)."""
    from rich.console import Console

    console = Console()
    if suite:
        csvs = [Path(results) / f"{suite}.csv"]
        if not csvs[0].exists():
            print(
                f"error: {csvs[0]} does not exist; run the suite first (python run_all.py --suite {suite})",
                file=sys.stderr,
            )
            return 2
    else:
        csvs = sorted(Path(results).glob("*.csv"))
        if not csvs:
            print(f"error: no result CSV in {results}; run a suite first (python run_all.py)", file=sys.stderr)
            return 2
    bad = 0
    for csv in csvs:
        try:
            check_csv(csv)
        except CorruptCSVError as exc:
            bad += 1
            print(
                f"error: {exc}; not rendered. Rebuild it from the result files: "
                f"python run_all.py --rebuild-csv --suite {csv.stem} --results {results}",
                file=sys.stderr,
            )
            continue
        start = time.perf_counter()
        written = render_report(csv, reports, csv.stem, rule, console=console)
        console.print(
            f"suite {csv.stem}: {len(written)} files in {reports / csv.stem} "
            f"({time.perf_counter() - start:.1f} s); open {written[0]}"
        )
    return 1 if bad else 0
