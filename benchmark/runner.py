"""Plan and execute runs: resolve specs to configurations, skip finished runs, record every outcome.

A configuration error (unknown name or key, wrong type) stops the whole plan before anything runs. A run
that fails while training (a NaN loss, a crash) is recorded as ``failed`` with its error and the remaining
runs go on; rows already written are never touched by a later failure.

Exactly-once: every executor (inline, local processes, Slurm array tasks) runs a configuration through
:func:`execute`, which holds an exclusive ``flock`` on ``runs/<run_id>/.lock`` while it checks the run's status
and trains it. The kernel drops the lock when its holder exits, however it exits (``kill -9`` included), so a
dead holder never blocks a relaunch; the file's content (host, pid, Slurm job) is only informative.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.config import RunConfig, build_config
from benchmark.results import ResultStore
from benchmark.suites import RunSpec

LOCK_FILE = ".lock"


class RunBusyError(RuntimeError):
    """Another live process holds the run's lock (it is training this run right now)."""


@dataclass
class PlannedRun:
    config: RunConfig
    status: str | None  # "ok", "failed" or None (to do)
    running: bool = False  # another process holds the run's lock

    @property
    def run_id(self) -> str:
        return self.config.run_id

    @property
    def state(self) -> str:
        """One of ok, failed, running, todo (a failed run being retried counts as running)."""
        if self.running:
            return "running"
        return self.status or "todo"


def _lock_path(store: ResultStore, run_id: str) -> Path:
    return store.run_dir(run_id) / LOCK_FILE


def _holder_info() -> dict[str, Any]:
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
        if key in os.environ:
            info[key.lower()] = os.environ[key]
    return info


def lock_holder(store: ResultStore, run_id: str) -> dict[str, Any] | None:
    """Who last took the run's lock (host, pid, Slurm job id), or None; says nothing about whether it is alive."""
    try:
        text = _lock_path(store, run_id).read_text()
        return json.loads(text) if text.strip() else None
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_running(store: ResultStore, run_id: str) -> bool:
    """True while a live process holds the run's lock."""
    path = _lock_path(store, run_id)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock if we got it
    return False


@contextlib.contextmanager
def run_lock(store: ResultStore, run_id: str, wait_s: float = 0.0, poll_s: float = 0.5) -> Iterator[None]:
    """Hold the run's exclusive lock; wait up to ``wait_s`` for a live holder, then raise :class:`RunBusyError`.

    A lock left by a dead process is not a problem: ``flock`` locks belong to open files and vanish with the
    process. (On a shared file system, ``flock`` must be supported cluster-wide, as on NFSv4 and Lustre with
    ``-o flock``.)
    """
    path = _lock_path(store, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunBusyError(
                        f"run {run_id} is being trained by another process ({lock_holder(store, run_id)})"
                    ) from None
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder_info()).encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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
    return [PlannedRun(cfg, store.status(cfg.run_id), is_running(store, cfg.run_id)) for cfg in configs]


def plan_counts(planned: Iterable[PlannedRun]) -> dict[str, int]:
    counts = {"runs": 0, "ok": 0, "failed": 0, "running": 0, "todo": 0}
    for p in planned:
        counts["runs"] += 1
        counts[p.state] += 1
    return counts


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
    fresh: bool | None = None,
) -> dict[str, Any]:
    """Run ``config`` unless already finished; write and return its row (``ok`` or ``failed``).

    The run resumes from its checkpoint if one exists, except that ``fresh`` (default: ``force``) discards it.
    Callers that may run concurrently go through :func:`execute`, which adds the run lock.
    """
    from benchmark.trainer import failed_row, fit  # torch is imported only when something trains

    status = store.status(config.run_id)
    if not needs_run(status, force, retry_failed):
        return store.read(config.run_id) or {}
    ckpt = store.checkpoint_path(config.run_id)
    if (force if fresh is None else fresh) and ckpt.exists():
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


def execute(
    config: RunConfig,
    store: ResultStore,
    *,
    force: bool = False,
    retry_failed: bool = False,
    progress: bool | None = None,
    lock_wait_s: float = 0.0,
    continue_forced: bool = False,
) -> dict[str, Any] | None:
    """Run ``config`` under its lock, exactly once; None when it needs no run (finished) after all.

    The status is read again under the lock, so two processes handed the same run never both train it.
    ``continue_forced`` is the requeued half of a ``--force`` run: it finishes the run from its checkpoint
    even though an older result exists. Raises :class:`RunBusyError` if another process holds the lock.
    """
    with run_lock(store, config.run_id, wait_s=lock_wait_s):
        status = store.status(config.run_id)
        if continue_forced and store.checkpoint_path(config.run_id).exists():
            return run_one(config, store, force=True, fresh=False, progress=progress)
        if not needs_run(status, force, retry_failed):
            return None
        return run_one(config, store, force=force, retry_failed=retry_failed, progress=progress)


def run_inline(
    configs: list[RunConfig],
    store: ResultStore,
    *,
    force: bool = False,
    retry_failed: bool = False,
    progress: bool | None = None,
    csv_name: str | None = None,
    csv_ids: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Run every configuration in this process, one after the other, refreshing the CSV after each.

    ``csv_ids`` are the runs the CSV lists (default: ``configs``'); finished ones appear, the rest when done.
    """
    rows = []
    ids = csv_ids if csv_ids is not None else [c.run_id for c in configs]
    for i, cfg in enumerate(configs, 1):
        status = store.status(cfg.run_id)
        if not needs_run(status, force, retry_failed):
            print(f"[{i}/{len(configs)}] {cfg.run_id}: already {status}, skipped (--force to rerun)", flush=True)
            rows.append(store.read(cfg.run_id) or {})
            continue
        print(f"[{i}/{len(configs)}] {cfg.run_id}", flush=True)
        try:
            maybe = execute(cfg, store, force=force, retry_failed=retry_failed, progress=progress)
        except RunBusyError as exc:
            print(f"    skipped: {exc}", flush=True)
            rows.append(store.read(cfg.run_id) or {})
            continue
        row = maybe if maybe is not None else (store.read(cfg.run_id) or {})
        if row.get("status") == "failed":
            print(f"    FAILED: {row.get('error')}", flush=True)
        rows.append(row)
        if csv_name:
            store.write_csv(csv_name, ids)
    return rows


def default_results_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "results"


def print_plan(planned: list[PlannedRun], suite_name: str) -> dict[str, int]:
    """``--dry-run``: one line per run (state, run id, row label, dataset, seed), then the counts."""
    from benchmark.registry import METHODS

    for p in planned:
        c = p.config
        label = METHODS.get(c.method).label(c.method_cfg)
        print(f"{p.state:8s} {p.run_id:45s} {label:18s} {c.dataset:16s} seed {c.seed}")
    counts = plan_counts(planned)
    print(
        f"suite {suite_name}: {counts['runs']} runs, {counts['ok']} done, {counts['failed']} failed, "
        f"{counts['running']} running, {counts['todo']} to do"
    )
    return counts


def status_table(suite_names: list[str], store: ResultStore) -> list[dict[str, Any]]:
    """Per suite: runs, done, failed, running, to do (or the error that stops its plan)."""
    from benchmark.config import ConfigError
    from benchmark.registry import SUITES, UnknownNameError

    out = []
    for name in suite_names:
        suite = SUITES.get(name)
        try:
            counts: dict[str, Any] = plan_counts(plan(resolve(suite.specs()), store))
            counts["error"] = ""
        except (ConfigError, UnknownNameError, ValueError) as exc:
            counts = {"runs": None, "ok": None, "failed": None, "running": None, "todo": None, "error": str(exc)}
        out.append({"suite": name, **counts})
    return out


def print_status(suite_names: list[str], store: ResultStore) -> list[dict[str, Any]]:
    """``--status``: the :func:`status_table` as a rich table."""
    from rich.console import Console
    from rich.table import Table

    rows = status_table(suite_names, store)
    table = Table(title=f"sweep status ({store.root})", title_justify="left")
    table.add_column("suite", style="bold")
    for col, style in (("runs", ""), ("done", "green"), ("failed", "red"), ("running", "cyan"), ("to do", "yellow")):
        table.add_column(col, justify="right", style=style)
    table.add_column("note")
    for r in rows:
        cells = ["-" if r[k] is None else str(r[k]) for k in ("runs", "ok", "failed", "running", "todo")]
        note = r["error"]
        if len(note) > 90:
            note = note[:87] + "..."
        table.add_row(r["suite"], *cells, note)
    Console(width=max(120, Console().width)).print(table)
    return rows
