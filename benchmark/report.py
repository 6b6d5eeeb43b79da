"""Former home of the summary renderer; the reports now live in :mod:`benchmark.reports`."""

from benchmark.reports import render_report, render_summary

__all__ = ["render_report", "render_summary"]
