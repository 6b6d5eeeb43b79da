"""Where the runs of a sweep execute: this process, N local processes, or Slurm job arrays (via submitit).

* ``inline`` -- :func:`benchmark.runner.run_inline`, one run after the other in this process.
* ``local``  -- ``workers`` processes through submitit's ``LocalExecutor``. Each worker walks the whole list
  of runs (starting at its own offset) and takes every run it can lock, so the pool balances itself.
* ``slurm``  -- one job-array task per run, ``array_parallelism`` at a time, with the resources of
  :class:`ClusterOptions` (command line > profile file > defaults). A task that gets Slurm's time-limit or
  pre-emption signal is requeued by submitit (:class:`RunTask` is ``Checkpointable``) and resumes from the
  run's last epoch checkpoint.

Whatever the executor, a run goes through :func:`benchmark.runner.execute` (lock, status check, train, atomic
result file), and the suite's CSV is rebuilt from the result files, so a run appears in it exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import submitit

from benchmark.config import RunConfig
from benchmark.results import ResultStore
from benchmark.runner import RunBusyError, execute, is_running, needs_run

ROOT = Path(__file__).resolve().parent.parent
EXECUTORS = ("inline", "local", "slurm")


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
    """The callable each job runs: one configuration through :func:`execute`; requeued on time limit."""

    def __init__(
        self,
        results: str,
        *,
        force: bool = False,
        retry_failed: bool = False,
        lock_wait_s: float = 30.0,
        csv_name: str | None = None,
        csv_ids: list[str] | None = None,
        continue_forced: bool = False,
    ) -> None:
        self.results = str(results)
        self.force = force
        self.retry_failed = retry_failed
        self.lock_wait_s = lock_wait_s
        self.csv_name = csv_name
        self.csv_ids = csv_ids
        self.continue_forced = continue_forced

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
                continue_forced=self.continue_forced,
            )
        except RunBusyError as exc:
            print(f"{config.run_id}: {exc}; left to its holder", flush=True)
            return {"run_id": config.run_id, "status": "busy"}
        if row is None:
            print(f"{config.run_id}: already finished, nothing to do", flush=True)
            row = store.read(config.run_id) or {}
        if self.csv_name:
            store.write_csv(self.csv_name, self.csv_ids)
        return {"run_id": config.run_id, "status": row.get("status"), "error": row.get("error", "")}

    def checkpoint(self, config: RunConfig) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on the time-limit/pre-emption signal: requeue the same run.

        The trainer has saved the last finished epoch; the requeued task resumes from it. A ``--force`` run
        must not restart from scratch when requeued, hence ``continue_forced``.
        """
        again = RunTask(
            self.results,
            force=False,
            retry_failed=self.retry_failed,
            lock_wait_s=max(self.lock_wait_s, 60.0),  # the old process may still be exiting
            csv_name=self.csv_name,
            csv_ids=self.csv_ids,
            continue_forced=self.force or self.continue_forced,
        )
        return submitit.helpers.DelayedSubmission(again, config)


class LocalWorker:
    """One of ``--workers`` local processes: takes every run of the list that no other process holds."""

    def __init__(self, task: RunTask, configs: list[RunConfig], offset: int, threads: int = 1) -> None:
        self.task = task
        self.configs = configs
        self.offset = offset
        self.threads = threads

    def __call__(self) -> list[dict[str, Any]]:
        import torch

        # torch starts one thread per core in every worker; N workers x all cores oversubscribe the machine
        # (small CPU kernels then run many times slower), so each worker gets its share of the cores.
        torch.set_num_threads(self.threads)
        n = len(self.configs)
        order = [self.configs[(self.offset + i) % n] for i in range(n)]
        task = RunTask(
            self.task.results,
            force=self.task.force,
            retry_failed=self.task.retry_failed,
            lock_wait_s=0.0,  # a locked run belongs to another worker: move on
            csv_name=self.task.csv_name,
            csv_ids=self.task.csv_ids,
        )
        return [task(cfg) for cfg in order]


def _job_environment(setup: list[str]) -> list[str]:
    """Shell lines that make a job import this checkout (not another install) with this interpreter's venv."""
    return [
        f"cd {ROOT}",
        f"export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}",
        # torch would start one thread per core of the node, whatever the job was given
        "export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}",
        *setup,
    ]


def slurm_executor(opts: ClusterOptions, folder: Path, name: str) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm", slurm_max_num_timeout=opts.max_requeues)
    params: dict[str, Any] = {
        "name": name,
        "timeout_min": opts.time_min,
        "cpus_per_task": opts.cpus,
        "slurm_array_parallelism": opts.array_parallelism,
        "slurm_signal_delay_s": opts.signal_delay_s,
        "slurm_setup": _job_environment(opts.setup),
    }
    if opts.gpus:
        params["gpus_per_node"] = opts.gpus
    if opts.mem_gb is not None:
        params["mem_gb"] = opts.mem_gb
    for key in ("partition", "account", "qos", "constraint"):
        value = getattr(opts, key)
        if value:
            params[f"slurm_{key}"] = value
    if opts.sbatch:
        params["slurm_additional_parameters"] = dict(opts.sbatch)
    executor.update_parameters(**params)
    return executor


def launch(
    configs: list[RunConfig],
    store: ResultStore,
    *,
    cluster: str,
    options: ClusterOptions,
    force: bool = False,
    retry_failed: bool = False,
    csv_name: str | None = None,
) -> dict[str, Any]:
    """Submit the runs of ``configs`` that still need one; wait for them unless ``options.wait`` is False.

    Returns ``{"submitted": n, "skipped_running": n, "jobs": [job ids], "errors": {run_id: message}}``.
    """
    if cluster not in ("local", "slurm"):
        raise ValueError(f"launch() handles --cluster local|slurm, not {cluster!r}")
    todo, running = [], []
    for cfg in configs:
        status = store.status(cfg.run_id)
        if not needs_run(status, force, retry_failed):
            continue
        (running if is_running(store, cfg.run_id) else todo).append(cfg)
    for cfg in running:
        print(f"{cfg.run_id}: running in another process, not submitted again", flush=True)
    result: dict[str, Any] = {"submitted": len(todo), "skipped_running": len(running), "jobs": [], "errors": {}}
    if not todo:
        print("nothing to submit: every run is finished or running", flush=True)
        return result
    ids = [c.run_id for c in configs]
    task = RunTask(
        str(store.root.resolve()),
        force=force,
        retry_failed=retry_failed,
        lock_wait_s=options.lock_wait_s,
        csv_name=csv_name,
        csv_ids=ids,
    )
    folder = Path(options.logs or store.root / f"{cluster}_logs").resolve()
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *paths])  # local workers import this checkout
    if cluster == "slurm":
        if shutil.which("sbatch") is None:
            raise ValueError(
                "--cluster slurm needs Slurm's sbatch on PATH (run on a login node, or use --cluster local)"
            )
        executor = slurm_executor(options, folder, f"mmb-{csv_name or 'sweep'}")
        jobs = executor.map_array(task, todo)
        array_id = jobs[0].job_id.split("_")[0] if jobs else "?"
        print(
            f"submitted Slurm array {array_id}: {len(jobs)} task(s), at most {options.array_parallelism} at once; "
            f"logs in {folder}",
            flush=True,
        )
        labels = {j.job_id: cfg.run_id for j, cfg in zip(jobs, todo)}
    else:
        executor = submitit.LocalExecutor(folder=folder / "%j")
        executor.update_parameters(timeout_min=options.time_min)
        n = max(1, min(options.workers, len(todo)))
        threads = max(1, (os.cpu_count() or 1) // n)
        jobs = [executor.submit(LocalWorker(task, todo, offset=i * len(todo) // n, threads=threads)) for i in range(n)]
        print(f"started {n} local worker process(es) for {len(todo)} run(s); logs in {folder}", flush=True)
        labels = {j.job_id: f"worker {i}" for i, j in enumerate(jobs)}
    result["jobs"] = [j.job_id for j in jobs]
    if not options.wait:
        print("not waiting (--no-wait): follow with `run_all.py --status`; relaunch to collect the CSV", flush=True)
        return result
    t0 = time.monotonic()
    for job in submitit.helpers.as_completed(jobs, poll_frequency=2):
        try:
            out = job.result()
            outs = out if isinstance(out, list) else [out]
            for o in outs:
                if o.get("status") == "failed":
                    result["errors"][o["run_id"]] = o.get("error", "")
            print(f"[{time.monotonic() - t0:6.0f}s] job {job.job_id} ({labels[job.job_id]}) done", flush=True)
        except Exception as exc:  # cancelled, killed, node failure: the run stays to do for a relaunch
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            result["errors"][labels[job.job_id]] = f"{type(exc).__name__}: {first}"
            print(f"[{time.monotonic() - t0:6.0f}s] job {job.job_id} ({labels[job.job_id]}) ended: {first}", flush=True)
    return result
