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
import math
import os
import socket
import time
import traceback
import uuid
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
    """Build every configuration first, so a malformed one stops the plan before any training.

    The runs a configuration requires (``Method.requires``) join the plan before their first dependant.
    """
    configs: list[RunConfig] = []
    seen: set[str] = set()

    def add(cfg: RunConfig) -> None:
        for dep in cfg.requires:
            add(dep)
        if cfg.run_id not in seen:  # identical configurations (e.g. shared by two grids) run once
            seen.add(cfg.run_id)
            configs.append(cfg)

    for spec in specs:
        add(build_config(spec.method, spec.dataset, spec.seed, spec.overrides))
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


def new_launch_id() -> str:
    """Tags the rows one invocation writes, so that its processes never rerun a run it already (re)ran."""
    return uuid.uuid4().hex[:12]


class DependencyPending(RunBusyError):
    """A run this run requires is not finished yet (to do, or being trained): this run stays to do for now."""


class DependencyFailed(RunBusyError):
    """A run this run requires failed: this run stays to do until the dependency is retried."""


def dependency_state(
    dep: RunConfig, store: ResultStore, *, force: bool = False, retry_failed: bool = False, launch_id: str = ""
) -> str:
    """``ready``, ``running``, ``failed`` (and not retried by this launch) or ``todo`` (this launch still has to
    (re)run it: missing, or forced / retried and not yet rerun by ``launch_id``)."""
    if is_running(store, dep.run_id):
        return "running"
    row = store.read(dep.run_id)
    status = None if row is None else str(row.get("status", "ok"))
    rerun = bool(launch_id) and row is not None and row.get("launch_id") == launch_id
    if status == "ok" and (rerun or not force):
        return "ready"
    if status == "failed" and (rerun or not (retry_failed or force)):
        return "failed"
    return "todo"


def check_dependencies(
    config: RunConfig,
    store: ResultStore,
    *,
    force: bool = False,
    retry_failed: bool = False,
    launch_id: str = "",
    wait_s: float = 0.0,
) -> None:
    """Return if every run ``config`` requires is finished; else raise :class:`DependencyPending` (waiting up to
    ``wait_s`` for one being trained) or :class:`DependencyFailed`."""
    for dep in config.requires:
        state = dependency_state(dep, store, force=force, retry_failed=retry_failed, launch_id=launch_id)
        if state == "running" and wait_s > 0:
            print(f"    waiting for {dep.run_id} (being trained by {lock_holder(store, dep.run_id)})", flush=True)
            try:
                with run_lock(store, dep.run_id, wait_s=wait_s):
                    pass
            except RunBusyError:
                pass
            state = dependency_state(dep, store, force=force, retry_failed=retry_failed, launch_id=launch_id)
        if state == "ready":
            continue
        if state == "failed":
            error = (store.read(dep.run_id) or {}).get("error", "")
            raise DependencyFailed(
                f"run {config.run_id} needs {dep.run_id}, which failed ({error}); rerun both with --retry-failed"
            )
        what = "being trained by another process" if state == "running" else "not finished"
        raise DependencyPending(f"run {config.run_id} needs {dep.run_id} ({what}); it runs once that has finished")


def run_one(
    config: RunConfig,
    store: ResultStore,
    *,
    force: bool = False,
    retry_failed: bool = False,
    progress: bool | None = None,
    fresh: bool | None = None,
    launch_id: str = "",
) -> dict[str, Any]:
    """Run ``config`` unless already finished; write and return its row (``ok`` or ``failed``).

    The run resumes from its checkpoint if one exists, except that ``fresh`` (default: a forced run that has a
    result) discards it. A forced rerun first sets the old result aside (``result.previous.json``), so that
    until it finishes the run counts as to do and, if interrupted, resumes (forced again or not). Callers that
    may run concurrently go through :func:`execute`, which adds the run lock and the dependency check.
    """
    from benchmark.result_row import failed_row  # torch is imported only when something trains
    from benchmark.trainer import fit

    status = store.status(config.run_id)
    if not needs_run(status, force, retry_failed):
        return store.read(config.run_id) or {}
    ckpt = store.checkpoint_path(config.run_id)
    if (force and status is not None if fresh is None else fresh) and ckpt.exists():
        ckpt.unlink()
    if status is not None:
        store.set_aside(config.run_id)
    try:
        row = fit(config, store, progress=progress)
    except KeyboardInterrupt:
        raise
    except InterruptedError:
        raise
    except Exception as exc:  # recorded as a failed run; the sweep goes on
        row = failed_row(config, exc)
        row["traceback"] = traceback.format_exc(limit=20)
        row["launch_id"] = launch_id
        store.write_result(row)
        return row
    row["launch_id"] = launch_id
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
    launch_id: str = "",
    dependency_wait_s: float | None = None,
) -> dict[str, Any] | None:
    """Run ``config`` under its lock, exactly once; None when it needs no run (finished) after all.

    The status is read again under the lock, so two processes handed the same run never both train it; a run
    this ``launch_id`` already (re)ran is not rerun by ``force``/``retry_failed`` in another of its processes.
    Raises :class:`RunBusyError` if another process holds the lock (after ``lock_wait_s``), and its subclasses
    :class:`DependencyPending` (a required run not finished; one being trained is waited for up to
    ``dependency_wait_s``, default ``lock_wait_s``) / :class:`DependencyFailed` (a required run failed).
    """
    dep_wait = lock_wait_s if dependency_wait_s is None else dependency_wait_s
    with run_lock(store, config.run_id, wait_s=lock_wait_s):
        row = store.read(config.run_id)
        if row is not None and launch_id and row.get("launch_id") == launch_id:
            return None
        status = None if row is None else str(row.get("status", "ok"))
        if not needs_run(status, force, retry_failed):
            return None
        check_dependencies(config, store, force=force, retry_failed=retry_failed, launch_id=launch_id, wait_s=dep_wait)
        return run_one(config, store, force=force, retry_failed=retry_failed, progress=progress, launch_id=launch_id)


def skip_reason(status: str) -> str:
    flag = "--retry-failed" if status == "failed" else "--force"
    return f"already {status}, skipped ({flag} to rerun)"


def run_inline(
    configs: list[RunConfig],
    store: ResultStore,
    *,
    force: bool = False,
    retry_failed: bool = False,
    progress: bool | None = None,
    csv_name: str | None = None,
    launch_id: str = "",
) -> list[dict[str, Any]]:
    """Run every configuration in this process, one after the other (``configs`` lists required runs first).

    A run another process is training (or whose required run it is training) is put off until the others are
    done, then waited for, so the sweep ends with every run finished. With ``csv_name`` the configurations join
    that suite (:meth:`ResultStore.add_to_suite`, unless already members) and its CSV is rebuilt after each run.
    """
    launch_id = launch_id or new_launch_id()
    if csv_name:
        store.add_to_suite(csv_name, [c.run_id for c in configs])
    rows: list[dict[str, Any]] = [{} for _ in configs]
    deferred: list[int] = []
    n = len(configs)

    def attempt(i: int, wait_s: float) -> None:
        cfg = configs[i]
        try:
            maybe = execute(
                cfg,
                store,
                force=force,
                retry_failed=retry_failed,
                progress=progress,
                lock_wait_s=wait_s,
                launch_id=launch_id,
                dependency_wait_s=wait_s,
            )
        except DependencyFailed as exc:
            print(f"    skipped: {exc}", flush=True)
            return
        except RunBusyError as exc:
            if wait_s == 0:
                print(f"    {exc}; put off until the other runs are done", flush=True)
                deferred.append(i)
            else:
                print(f"    skipped: {exc}", flush=True)
            return
        row = maybe if maybe is not None else (store.read(cfg.run_id) or {})
        if row.get("status") == "failed":
            print(f"    FAILED: {row.get('error')}", flush=True)
        rows[i] = row
        if csv_name:
            store.write_csv(csv_name)

    for i, cfg in enumerate(configs):
        status = store.status(cfg.run_id)
        if not needs_run(status, force, retry_failed):
            print(f"[{i + 1}/{n}] {cfg.run_id}: {skip_reason(str(status))}", flush=True)
            rows[i] = store.read(cfg.run_id) or {}
            continue
        print(f"[{i + 1}/{n}] {cfg.run_id}", flush=True)
        attempt(i, 0.0)
    for i in list(deferred):  # in plan order: a required run before its dependants
        print(f"[{i + 1}/{n}] {configs[i].run_id}: waiting for the process that holds it", flush=True)
        attempt(i, math.inf)
    return rows


def print_plan(planned: list[PlannedRun], suite_name: str) -> dict[str, int]:
    """``--dry-run``: one line per run (state, run id, row label, dataset, seed), then the counts."""
    from benchmark.registry import METHODS

    for p in planned:
        c = p.config
        label = METHODS.get(c.method).label(c.method_cfg)
        needs = f"  needs {', '.join(d.run_id for d in c.requires)}" if c.requires else ""
        print(f"{p.state:8s} {p.run_id:45s} {label:18s} {c.dataset:16s} seed {c.seed}{needs}")
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
