"""Reports: the paper's tables and figures from result CSVs, beside the paper's numbers (results/paper/).

Entry points: :func:`render_report` (one suite's CSV -> LaTeX, Markdown, PNG/PDF) and :func:`report_only`
(``run_all.py --report-only``). Nothing in this package imports torch.
"""

from benchmark.reports.render import build_tables, render_report, report_only

__all__ = ["build_tables", "render_report", "report_only"]
