"""Plan and execute runs: resolve specs to configurations, skip finished runs, record every outcome.

A configuration error (unknown name or key, wrong type) stops the whole plan before anything runs. A run
that fails while training (a NaN loss, a crash) is recorded as ``failed`` with its error and the remaining
runs go on; rows already written are never touched by a later failure.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.config import RunConfig, build_config
from benchmark.results import ResultStore
from benchmark.suites import RunSpec


@dataclass
class PlannedRun:
    config: RunConfig
    status: str | None  # "ok", "failed" or None (to do)

    @property
    def run_id(self) -> str:
        return self.config.run_id


def resolve(specs: Iterable[RunSpec]) -> list[RunConfig]:
    """Build every configuration first, so a malformed one stops the plan before any training."""
    configs, seen = [], set()
    for spec in specs:
        cfg = build_config(spec.method, spec.dataset, spec.seed, spec.overrides)
        if cfg.run_id not in seen:  # identical configurations (e.g. shared by two grids) run once
            seen.add(cfg.run_id)
            configs.append(cfg)
    return configs


def plan(configs: Iterable[RunConfig], store: ResultStore) -> list[PlannedRun]:
    return [PlannedRun(cfg, store.status(cfg.run_id)) for cfg in configs]


def needs_run(status: str | None, force: bool, retry_failed: bool) -> bool:
    if force or status is None:
        return True
    return status == "failed" and retry_failed


def run_one(
    config: RunConfig,
    store: ResultStore,
    *,
    force: bool = False,
    retry_failed: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run ``config`` unless already finished; write and return its row (``ok`` or ``failed``)."""
    from benchmark.trainer import failed_row, fit  # torch is imported only when something trains

    status = store.status(config.run_id)
    if not needs_run(status, force, retry_failed):
        return store.read(config.run_id) or {}
    ckpt = store.checkpoint_path(config.run_id)
    if force and ckpt.exists():
        ckpt.unlink()
    try:
        row = fit(config, store, progress=progress)
    except KeyboardInterrupt:
        raise
    except InterruptedError:
        raise
    except Exception as exc:  # recorded as a failed run; the sweep goes on
        row = failed_row(config, exc)
        row["traceback"] = traceback.format_exc(limit=20)
        store.write_result(row)
        return row
    store.write_result(row)
    with contextlib.suppress(FileNotFoundError):
        ckpt.unlink()
    return row


def run_inline(
    configs: list[RunConfig],
    store: ResultStore,
    *,
    force: bool = False,
    retry_failed: bool = False,
    progress: bool | None = None,
    csv_name: str | None = None,
) -> list[dict[str, Any]]:
    """Run every configuration in this process, one after the other, refreshing the CSV after each."""
    rows = []
    ids = [c.run_id for c in configs]
    for i, cfg in enumerate(configs, 1):
        status = store.status(cfg.run_id)
        if not needs_run(status, force, retry_failed):
            print(f"[{i}/{len(configs)}] {cfg.run_id}: already {status}, skipped (--force to rerun)", flush=True)
            rows.append(store.read(cfg.run_id) or {})
            continue
        print(f"[{i}/{len(configs)}] {cfg.run_id}", flush=True)
        row = run_one(cfg, store, force=force, retry_failed=retry_failed, progress=progress)
        if row.get("status") == "failed":
            print(f"    FAILED: {row.get('error')}", flush=True)
        rows.append(row)
        if csv_name:
            store.write_csv(csv_name, ids)
    return rows


def default_results_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "results"
