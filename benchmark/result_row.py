"""The result row of a run: test metrics under each model-selection rule, and the provenance columns.

The finished run's row carries the test metrics under three model-selection rules, each labelled:

* ``[best_val]``  -- the epoch with the best validation ``train.select_metric`` (our default protocol);
* ``[last]``      -- the final epoch;
* ``[best_test]`` -- the epoch with the best test metric, the protocol of the official code of these papers.
"""

from __future__ import annotations

import math
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.config import RunConfig
from benchmark.data import DatasetInfo
from benchmark.metrics import METRICS
from benchmark.models import backbone_name
from benchmark.registry import METHODS

SELECTION_RULES = ("best_val", "last", "best_test")


def _git(*args: str) -> str:
    """``git args`` run in this package's checkout: its stripped standard output."""
    out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).resolve().parent, timeout=5)
    return out.stdout.strip()


@lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        commit = _git("rev-parse", "--short", "HEAD") or "unknown"
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict[str, Any]:
    """Where and with what a row was produced (CPU results depend on the thread count, see docs/cluster.md)."""
    return {
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "git_commit": git_commit(),
        "host": platform.node(),
    }


def select_epochs(history: list[dict[str, Any]], metric: str) -> dict[str, int]:
    """Index into ``history`` chosen by each selection rule (first epoch wins ties)."""

    def best(split: str) -> int:
        values = [h[split].get(metric, float("nan")) for h in history]
        finite = [(v, -i) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
        return -max(finite)[1] if finite else len(history) - 1

    return {"best_val": best("val"), "last": len(history) - 1, "best_test": best("test")}


def summarise(history: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Flat result columns: ``test_<metric>[<rule>]``, ``val_<metric>[<rule>]`` and ``epoch[<rule>]``."""
    out: dict[str, Any] = {}
    for rule, idx in select_epochs(history, metric).items():
        h = history[idx]
        out[f"epoch[{rule}]"] = h["epoch"]
        for name, value in h["test"].items():
            out[f"test_{name}[{rule}]"] = value
        out[f"val_{metric}[{rule}]"] = h["val"].get(metric)
    return out


def finished_row(
    config: RunConfig,
    info: DatasetInfo,
    history: list[dict[str, Any]],
    step_times: list[float],
    wall_time_s: float,
    device: str,
) -> dict[str, Any]:
    """The row of a run that trained all its epochs."""
    row: dict[str, Any] = {
        "run_id": config.run_id,
        "status": "ok",
        "label": METHODS.get(config.method).label(config.method_cfg),
        **METHODS.get(config.method).row_facts(config.method_cfg),  # what the reports show (no torch there)
        **config.flat(),
        **summarise(history, config.train.select_metric),
        "select_metric": config.train.select_metric,
        "epochs_run": len(history),
        "wall_time_s": wall_time_s,
        "mean_step_ms": 1000.0 * float(np.mean(step_times)) if step_times else None,
        "device": device,
        "config_id": config.config_id,
        **provenance(),
        "error": "",
    }
    row["paper_metric"] = info.paper_metric
    for m in info.modalities:  # the encoder actually used (model.backbones or the dataset default)
        row[f"backbone.{m}"] = backbone_name(info, config.model, m)
    assert all(f"test_{m}[best_val]" in row for m in METRICS)
    return row


def failed_row(config: RunConfig, error: BaseException) -> dict[str, Any]:
    """The row recorded for a run that raised (NaN loss, crash): its error is kept for ``--retry-failed``."""
    return {
        "run_id": config.run_id,
        "status": "failed",
        "label": METHODS.get(config.method).label(config.method_cfg),
        **METHODS.get(config.method).row_facts(config.method_cfg),  # what the reports show (no torch there)
        **config.flat(),
        "error": f"{type(error).__name__}: {error}",
        "config_id": config.config_id,
        **provenance(),
    }
