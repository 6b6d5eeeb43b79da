"""Where the runs of a sweep execute: this process, N local processes, or Slurm job arrays (via submitit).

* ``inline`` -- :func:`benchmark.runner.run_inline`, one run after the other in this process.
* ``local``  -- ``workers`` processes through submitit's ``LocalExecutor``. Each worker walks the whole list
  of runs (starting at its own offset) and takes every run it can lock, so the pool balances itself; a run
  whose required runs are not finished is put back until they are.
* ``slurm``  -- one job-array task per run, ``array_parallelism`` at a time, with the resources of
  :class:`ClusterOptions` (command line > profile file > defaults); runs that require others go in a second
  array (a third for their dependants, ...) that starts after the first. A task that gets Slurm's time-limit
  or pre-emption signal is requeued by submitit (:class:`RunTask` is ``Checkpointable``) and resumes from the
  run's last epoch checkpoint. Each run's array task id is kept in ``runs/<run_id>/.slurm_job``, so a relaunch
  does not submit runs still in the queue again.

Whatever the executor, a run goes through :func:`benchmark.runner.execute` (lock, status check, dependencies,
train, atomic result file), and the suite's CSV is rebuilt from the result files of the suite's members, so a
run appears in it exactly once.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import submitit

from benchmark.config import RunConfig
from benchmark.results import ResultStore, atomic_write_text
from benchmark.runner import (
    DependencyFailed,
    DependencyPending,
    RunBusyError,
    dependency_state,
    execute,
    is_running,
    needs_run,
    new_launch_id,
)

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ClusterOptions:
    """Resources and behaviour of ``--cluster local|slurm``; every field is also a key of a profile file."""

    partition: str | None = None
    gpus: int = 0  # GPUs per node (= per task: one task per job)
    cpus: int = 2  # CPUs per task
    mem_gb: float | None = None
    time_min: int = 240  # time limit per job; a run that hits it is requeued and resumes
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 64  # array tasks running at once
    signal_delay_s: int = 120  # the time-limit signal comes this long before the kill
    max_requeues: int = 3  # time-limit requeues per run (pre-emptions are not counted)
    sbatch: dict[str, str] = field(default_factory=dict)  # any further sbatch option, e.g. {"reservation": "x"}
    setup: list[str] = field(default_factory=list)  # shell lines run before each task, e.g. "module load cuda"
    workers: int = 2  # --cluster local: processes at once
    logs: str | None = None  # submitit folder (default: <results>/slurm_logs or <results>/local_logs)
    lock_wait_s: float = 30.0  # how long a task waits for another holder of its run's lock
    wait: bool = True  # wait for the jobs and write the CSV; False submits and returns

    def updated(self, values: dict[str, Any]) -> ClusterOptions:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown cluster option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        merged = {**asdict(self), **{k: v for k, v in values.items() if v is not None}}
        if "sbatch" in values and values["sbatch"]:
            merged["sbatch"] = {**self.sbatch, **{str(k): str(v) for k, v in values["sbatch"].items()}}
        return ClusterOptions(**merged)


def load_profile(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A cluster profile: a TOML (Python >= 3.11) or JSON file whose keys are :class:`ClusterOptions` fields.

    A TOML profile may hold several named tables and a ``default`` key naming one; ``path:name`` picks one.
    """
    p, name = Path(path), ""
    if not p.exists() and ":" in str(path):
        head, name = str(path).rsplit(":", 1)
        p = Path(head)
    if not p.is_file():
        raise ValueError(f"cluster profile {p} not found")
    if p.suffix == ".json":
        data = json.loads(p.read_text())
    elif p.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            raise ValueError(f"reading {p} needs Python >= 3.11 (tomllib); write the profile as JSON") from None
        data = tomllib.loads(p.read_text())
    else:
        raise ValueError(f"cluster profile {p}: expected a .toml or .json file")
    tables = {k: v for k, v in data.items() if isinstance(v, dict) and k != "sbatch"}
    if name or (tables and "default" in data):
        chosen = name or data["default"]
        if chosen not in tables:
            raise ValueError(f"cluster profile {p} has no table {chosen!r}; tables: {', '.join(sorted(tables))}")
        data = tables[chosen]
    ClusterOptions().updated(data)  # validates the keys
    return data


class RunTask(submitit.helpers.Checkpointable):
    """The callable each job runs: one configuration through :func:`execute`; requeued on time limit.

    Returns ``{"run_id", "status", "error"}`` with status ``ok``/``failed`` (trained now or before), ``busy``
    (another process holds the run), ``waiting`` (a required run is not finished) or ``blocked`` (a required run
    failed); the last three leave the run to do.
    """

    def __init__(
        self,
        results: str,
        *,
        force: bool = False,
        retry_failed: bool = False,
        lock_wait_s: float = 30.0,
        csv_name: str | None = None,
        launch_id: str = "",
    ) -> None:
        self.results = str(results)
        self.force = force
        self.retry_failed = retry_failed
        self.lock_wait_s = lock_wait_s
        self.csv_name = csv_name
        self.launch_id = launch_id

    def __call__(self, config: RunConfig) -> dict[str, Any]:
        store = ResultStore(self.results)
        try:
            row = execute(
                config,
                store,
                force=self.force,
                retry_failed=self.retry_failed,
                progress=False,
                lock_wait_s=self.lock_wait_s,
                launch_id=self.launch_id,
            )
        except (DependencyPending, DependencyFailed) as exc:
            print(f"{config.run_id}: not started: {exc}", flush=True)
            status = "blocked" if isinstance(exc, DependencyFailed) else "waiting"
            return {"run_id": config.run_id, "status": status, "error": str(exc)}
        except RunBusyError as exc:
            print(f"{config.run_id}: {exc}; left to its holder", flush=True)
            return {"run_id": config.run_id, "status": "busy"}
        if row is None:
            print(f"{config.run_id}: already finished, nothing to do", flush=True)
            row = store.read(config.run_id) or {}
        if self.csv_name:
            store.write_csv(self.csv_name)
        return {"run_id": config.run_id, "status": row.get("status"), "error": row.get("error", "")}

    def checkpoint(self, config: RunConfig) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on the time-limit/pre-emption signal: requeue the same run.

        The trainer has saved the last finished epoch; the requeued task resumes from it. A ``--force`` run set
        its old result aside when it started, so the requeued task finds it to do and resumes (it does not
        start over: only a run with a result is restarted afresh by ``--force``).
        """
        again = RunTask(
            self.results,
            force=self.force,
            retry_failed=self.retry_failed,
            lock_wait_s=max(self.lock_wait_s, 60.0),  # the old process may still be exiting
            csv_name=self.csv_name,
            launch_id=self.launch_id,
        )
        return submitit.helpers.DelayedSubmission(again, config)


class LocalWorker:
    """One of ``--workers`` local processes: takes every run of the list that no other process holds.

    A run whose required runs are not finished yet is put back and tried again once the others are done (the
    worker trains a required run itself if nobody holds it), so dependencies finish before their dependants.
    """

    def __init__(
        self, task: RunTask, configs: list[RunConfig], offset: int, threads: int = 1, poll_s: float = 2.0
    ) -> None:
        self.task = task
        self.configs = configs
        self.offset = offset
        self.threads = threads
        self.poll_s = poll_s

    def __call__(self) -> list[dict[str, Any]]:
        import torch

        # torch starts one thread per core in every worker; N workers x all cores oversubscribe the machine
        # (small CPU kernels then run many times slower), so each worker gets its share of the cores.
        torch.set_num_threads(self.threads)
        # The launcher stops its workers with SIGTERM (passed on by submitit's controller, whose own handler in
        # this process would ignore it): stop the run here; it resumes from its last epoch on the next launch.
        signal.signal(signal.SIGTERM, _stop_worker)
        n = len(self.configs)
        pending = [self.configs[(self.offset + i) % n] for i in range(n)]
        t = self.task
        task = RunTask(
            t.results,
            force=t.force,
            retry_failed=t.retry_failed,
            lock_wait_s=0.0,  # a locked run belongs to another worker: move on
            csv_name=t.csv_name,
            launch_id=t.launch_id,
        )
        store = ResultStore(t.results)
        outcomes: dict[str, dict[str, Any]] = {}
        while pending:
            waiting = []
            for cfg in pending:
                out = task(cfg)
                if out.get("status") == "waiting":
                    waiting.append(cfg)
                else:
                    outcomes[cfg.run_id] = out
            if waiting and len(waiting) == len(pending):  # no progress: train a free dependency, or wait
                for cfg in waiting:
                    for dep in cfg.requires:
                        state = dependency_state(
                            dep, store, force=t.force, retry_failed=t.retry_failed, launch_id=t.launch_id
                        )
                        if state == "todo":
                            outcomes[dep.run_id] = task(dep)
                time.sleep(self.poll_s)
            pending = waiting
        return list(outcomes.values())


def _job_environment(setup: list[str]) -> list[str]:
    """Shell lines that make a job import this checkout (not another install) with this interpreter's venv."""
    root = shlex.quote(str(ROOT))
    return [
        f"cd {root}",
        f"export PYTHONPATH={root}${{PYTHONPATH:+:$PYTHONPATH}}",
        # torch would start one thread per core of the node, whatever the job was given
        "export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}",
        *setup,
    ]


def slurm_parameters(opts: ClusterOptions, name: str, after: Iterable[str] = ()) -> dict[str, Any]:
    """The sbatch parameters of a job array, in submitit ``SlurmExecutor`` names; ``after``: job ids the array
    starts after (``--dependency=afterany:...``)."""
    params: dict[str, Any] = {
        "job_name": name,
        "time": opts.time_min,
        "cpus_per_task": opts.cpus,
        "array_parallelism": opts.array_parallelism,
        "signal_delay_s": opts.signal_delay_s,
        "setup": _job_environment(opts.setup),
    }
    if opts.gpus:
        params["gpus_per_node"] = opts.gpus
    if opts.mem_gb is not None:
        gb = float(opts.mem_gb)
        params["mem"] = f"{int(gb)}GB" if gb.is_integer() else f"{int(gb * 1024)}MB"
    for key in ("partition", "account", "qos", "constraint"):
        value = getattr(opts, key)
        if value:
            params[key] = value
    after = sorted(set(after))
    if after:
        params["dependency"] = "afterany:" + ":".join(after)
    if opts.sbatch:
        params["additional_parameters"] = dict(opts.sbatch)
    return params


def sbatch_script(opts: ClusterOptions, folder: Path, name: str, tasks: int, after: Iterable[str] = ()) -> str:
    """The sbatch script submitit writes for an array of ``tasks`` runs (no Slurm needed to build it)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=tasks, **slurm_parameters(opts, name, after))


def slurm_executor(opts: ClusterOptions, folder: Path, name: str, after: Iterable[str] = ()) -> submitit.SlurmExecutor:
    executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=opts.max_requeues)
    executor.update_parameters(**slurm_parameters(opts, name, after))
    return executor


SLURM_JOB_FILE = ".slurm_job"


def queued_in_slurm(store: ResultStore, configs: list[RunConfig]) -> dict[str, str]:
    """``{run_id: job id}`` of the runs whose last submitted array task is still in Slurm's queue (pending,
    running, requeued): a relaunch does not submit them again."""
    recorded = {}
    for cfg in configs:
        with contextlib.suppress(OSError):
            recorded[cfg.run_id] = (store.run_dir(cfg.run_id) / SLURM_JOB_FILE).read_text().strip()
    if not recorded:
        return {}
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i", "-u", getpass.getuser()],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"warning: squeue failed ({exc}); runs submitted before are submitted again", flush=True)
        return {}
    queued = set(out.split())
    return {run_id: job for run_id, job in recorded.items() if job in queued}


def dependency_levels(configs: list[RunConfig]) -> list[list[RunConfig]]:
    """``configs`` in levels: a run comes one level after the latest of the runs it requires among ``configs``
    (``configs`` lists required runs first, as :func:`benchmark.runner.resolve` does)."""
    level: dict[str, int] = {}
    ids = {c.run_id for c in configs}
    for cfg in configs:
        level[cfg.run_id] = 1 + max((level.get(d.run_id, -1) for d in cfg.requires if d.run_id in ids), default=-1)
    out: list[list[RunConfig]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for cfg in configs:
        out[level[cfg.run_id]].append(cfg)
    return out


def launch(
    configs: list[RunConfig],
    store: ResultStore,
    *,
    cluster: str,
    options: ClusterOptions,
    force: bool = False,
    retry_failed: bool = False,
    csv_name: str | None = None,
    launch_id: str = "",
) -> dict[str, Any]:
    """Submit the runs of ``configs`` that still need one; wait for them unless ``options.wait`` is False.

    Runs that others require go first: on Slurm, one array per dependency level, each starting after the
    previous one (``afterany``); local workers put a run back until the runs it requires are finished.
    Returns ``{"submitted": n, "skipped_running": n, "queued": n, "jobs": [job ids], "errors": {key: message}}``.
    """
    if cluster not in ("local", "slurm"):
        raise ValueError(f"launch() handles --cluster local|slurm, not {cluster!r}")
    launch_id = launch_id or new_launch_id()
    if csv_name:
        store.add_to_suite(csv_name, [c.run_id for c in configs])
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise ValueError("--cluster slurm needs Slurm's sbatch on PATH (run on a login node, or use --cluster local)")
    candidates, running = [], []
    for cfg in configs:
        status = store.status(cfg.run_id)
        if not needs_run(status, force, retry_failed):
            continue
        (running if is_running(store, cfg.run_id) else candidates).append(cfg)
    queued = queued_in_slurm(store, candidates) if cluster == "slurm" else {}
    todo = [c for c in candidates if c.run_id not in queued]
    for cfg in running:
        print(f"{cfg.run_id}: running in another process, not submitted again", flush=True)
    for run_id, job in queued.items():
        print(f"{run_id}: still queued in Slurm (job {job}), not submitted again", flush=True)
    result: dict[str, Any] = {
        "submitted": len(todo),
        "skipped_running": len(running),
        "queued": len(queued),
        "jobs": [],
        "errors": {},
    }
    if not todo:
        print("nothing to submit: every run is finished, running or queued", flush=True)
        return result
    task = RunTask(
        str(store.root.resolve()),
        force=force,
        retry_failed=retry_failed,
        lock_wait_s=options.lock_wait_s,
        csv_name=csv_name,
        launch_id=launch_id,
    )
    folder = Path(options.logs or store.root / f"{cluster}_logs").resolve()
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *paths])  # local workers import this checkout
    jobs: list[Any] = []
    if cluster == "slurm":
        labels = {}
        previous: list[str] = []
        for level in dependency_levels(todo):
            after = set(previous) | {queued[d.run_id] for c in level for d in c.requires if d.run_id in queued}
            executor = slurm_executor(options, folder, f"mmb-{csv_name or 'sweep'}", after)
            level_jobs = executor.map_array(task, level)
            array_id = level_jobs[0].job_id.split("_")[0]
            for job, cfg in zip(level_jobs, level):
                atomic_write_text(store.run_dir(cfg.run_id) / SLURM_JOB_FILE, job.job_id)
                labels[job.job_id] = cfg.run_id
            what = f", after {', '.join(sorted(after))}" if after else ""
            print(
                f"submitted Slurm array {array_id}: {len(level_jobs)} task(s), at most {options.array_parallelism} "
                f"at once{what}; logs in {folder}",
                flush=True,
            )
            jobs += level_jobs
            previous = [array_id]
    else:
        executor = submitit.LocalExecutor(folder=folder / "%j")
        executor.update_parameters(timeout_min=options.time_min)
        n = max(1, min(options.workers, len(todo)))
        threads = max(1, (os.cpu_count() or 1) // n)
        # The workers start with SIGINT ignored: a Ctrl-C reaches this launcher alone, which stops them cleanly.
        previous = None
        with contextlib.suppress(ValueError):  # (not the main thread: leave the handler alone)
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            workers = [LocalWorker(task, todo, offset=i * len(todo) // n, threads=threads) for i in range(n)]
            jobs = [executor.submit(w) for w in workers]
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        print(f"started {n} local worker process(es) for {len(todo)} run(s); logs in {folder}", flush=True)
        labels = {j.job_id: f"worker {i}" for i, j in enumerate(jobs)}
    result["jobs"] = [j.job_id for j in jobs]
    if not options.wait:
        print("not waiting (--no-wait): follow with `run_all.py --status`; relaunch to collect the CSV", flush=True)
        return result
    t0 = time.monotonic()
    try:
        for job in submitit.helpers.as_completed(jobs, poll_frequency=2):
            try:
                out = job.result()
                outs = out if isinstance(out, list) else [out]
                for o in outs:
                    if o.get("status") in ("failed", "blocked", "waiting"):
                        result["errors"][o["run_id"]] = o.get("error", "")
                print(f"[{time.monotonic() - t0:6.0f}s] job {job.job_id} ({labels[job.job_id]}) done", flush=True)
            except Exception as exc:  # cancelled, killed, node failure: the run stays to do for a relaunch
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                result["errors"][labels[job.job_id]] = f"{type(exc).__name__}: {first}"
                elapsed = time.monotonic() - t0
                print(f"[{elapsed:6.0f}s] job {job.job_id} ({labels[job.job_id]}) ended: {first}", flush=True)
    except KeyboardInterrupt:
        if cluster == "local":
            stop_local_jobs(jobs)
            print("interrupted: local workers stopped", file=sys.stderr, flush=True)
        else:
            arrays = sorted({j.job_id.split("_")[0] for j in jobs})
            print(
                f"interrupted: the Slurm arrays {', '.join(arrays)} go on (scancel {' '.join(arrays)} stops them)",
                file=sys.stderr,
                flush=True,
            )
        raise
    return result


def stop_local_jobs(jobs: list[Any], timeout_s: float = 30.0) -> None:
    """Stop local workers: SIGTERM to each submitit controller, which passes it on to its worker (whose handler
    stops the run: its last epoch stays for a resume); the controller then exits. A controller still alive after
    ``timeout_s`` is killed with its worker."""
    procs = [p for p in (getattr(job, "_process", None) for job in jobs) if p is not None and p.poll() is None]
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for child in _children(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    """Child process ids of ``pid`` (Linux ``/proc``; empty elsewhere)."""
    out: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            out += [int(x) for x in path.read_text().split()]
    return out


def _stop_worker(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")
