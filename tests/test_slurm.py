"""Real Slurm job arrays through run_all.py: cancel one task, requeue one, kill -9 one, relaunch, check the CSV;
required runs (ReconBoost's unimodal runs) in a first array, from a checkout path with a space; no resubmission
of queued tasks.

Needs the single-node test cluster (``scripts/slurm_cluster.sh up``; ``.ci/run`` starts it). Outside CI the
test skips when no cluster answers; in CI (``CI=true``) a missing cluster is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmark.registry import SUITES
from benchmark.results import ResultStore
from benchmark.runner import lock_holder, resolve

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 8
SETS = {
    "train.epochs": EPOCHS,
    "train.max_steps_per_epoch": 1,
    "train.batch_size": 16,
    "model.resnet_width": 8,
}


def _sh(*cmd: str, timeout: float = 60) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout


@pytest.fixture(scope="module")
def partition() -> str:
    in_ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    reason = ""
    if shutil.which("sinfo") is None:
        reason = "Slurm is not installed (scripts/slurm_cluster.sh install && scripts/slurm_cluster.sh up)"
    else:
        try:
            rows = _sh("sinfo", "-h", "-o", "%P %t").split()
        except (subprocess.SubprocessError, OSError) as exc:
            rows, reason = [], f"sinfo failed: {exc}; start the cluster with scripts/slurm_cluster.sh up"
        states = rows[1::2]
        if rows and not any(s in ("idle", "mix", "alloc") for s in states):
            reason = f"no usable Slurm node (sinfo: {' '.join(rows)})"
        elif rows:
            return rows[0].rstrip("*")
        reason = reason or "sinfo lists no partition"
    if in_ci:
        pytest.fail(f"CI=true but no Slurm test cluster: {reason}")
    pytest.skip(reason)


def _wait(predicate, timeout: float, what: str, poll: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _squeue(array_id: str) -> list[str]:
    return _sh("squeue", "-h", "-r", "-j", array_id, "-o", "%i %T %r").strip().splitlines()


def test_array_cancel_requeue_kill9_relaunch(partition, tmp_path):
    t_start = time.monotonic()
    results = tmp_path / "results"
    store = ResultStore(results)
    cmd = [sys.executable, "run_all.py", "--suite", "quick", "--methods", "joint", "--seeds", "0,1,2,3"]
    for k, v in SETS.items():
        cmd += ["--set", f"{k}={v}"]
    cmd += ["--results", str(results), "--no-progress", "--cluster", "slurm", "--partition", partition]
    cmd += ["--cpus", "1", "--time", "5", "--signal-delay", "20", "--array-parallelism", "2", "--lock-wait", "60"]
    configs = resolve(SUITES.get("quick").specs(["joint"], None, [0, 1, 2, 3], {k: str(v) for k, v in SETS.items()}))
    ids = [c.run_id for c in configs]

    first = subprocess.run([*cmd, "--no-wait"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    array_id = re.search(r"submitted Slurm array (\d+): 4 task\(s\)", first.stdout).group(1)

    # 1. cancel task 3 (pending behind the parallelism limit of 2)
    _sh("scancel", f"{array_id}_3")
    # 2. each as soon as it has saved an epoch: the time-limit signal to task 0 (submitit checkpoints and
    #    requeues it), kill -9 to the Python process of task 1 (nothing is written; its checkpoint stays)
    _wait(lambda: store.checkpoint_path(ids[0]).is_file(), 150, "the first checkpoint of run 0", poll=0.05)
    # (the signal Slurm sends --signal-delay s before the time limit; sent straight to the task's process, as
    # `scancel --signal=USR2` would, without waiting for a busy controller)
    os.kill(lock_holder(store, ids[0])["pid"], signal.SIGUSR2)
    assert store.read(ids[0]) is None, "run 0 ended before the test could interrupt it"
    _wait(lambda: store.checkpoint_path(ids[1]).is_file(), 150, "the first checkpoint of run 1", poll=0.05)
    victim = lock_holder(store, ids[1])
    os.kill(victim["pid"], 9)
    assert store.read(ids[1]) is None, "run 1 ended before the test could interrupt it"
    assert victim["slurm_array_task_id"] == "1"
    # Slurm holds a requeued job for 120 s (BeginTime): release it at once
    _wait(lambda: any("BeginTime" in row for row in _squeue(f"{array_id}_0")), 60, "task 0 requeued")
    # Released at once, the new incarnation can be refused ("Job credential revoked") while the old one's
    # credential is still revoked: wait out the cluster's KillWait (5 s) before releasing it.
    time.sleep(8)
    _sh("scontrol", "update", f"JobId={array_id}_0", "StartTime=now", timeout=60)
    _wait(lambda: not _squeue(array_id), 200, f"array {array_id} to finish", poll=1.0)
    assert [store.status(i) for i in ids] == ["ok", None, "ok", None]
    assert lock_holder(store, ids[0])["slurm_restart_count"] == "1"  # the requeued incarnation finished it

    # 3. relaunch: only the killed and the cancelled runs are submitted; the killed one resumes
    second = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=240)
    assert second.returncode == 0, second.stdout + second.stderr
    assert re.search(r"submitted Slurm array \d+: 2 task\(s\)", second.stdout), second.stdout
    assert "suite quick: 4 runs, 4 done, 0 failed, 0 running, 0 to do" in second.stdout

    df = pd.read_csv(results / "quick.csv")
    assert sorted(df["run_id"]) == sorted(ids) and df["run_id"].is_unique
    assert set(df["status"]) == {"ok"} and set(df["epochs_run"]) == {EPOCHS}
    logs = "".join(p.read_text() for p in (results / "slurm_logs").rglob("*_log.out"))
    for seed in (0, 1):  # trained from epoch 1 once, then resumed: no epoch of theirs ran twice to the end
        assert logs.count(f"[joint/av_digits/s{seed}] epoch 1/{EPOCHS} ") == 1
        assert logs.count(f"[joint/av_digits/s{seed}] epoch {EPOCHS}/{EPOCHS} ") == 1
    print(f"slurm round trip {time.monotonic() - t_start:.0f}s")

    # 4. the interrupted runs equal uninterrupted ones (jobs run with one thread; so does the reference)
    import torch

    from benchmark.trainer import fit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for cfg in configs[:2]:
            whole = fit(cfg, None, progress=False)
            got = store.read(cfg.run_id)
            keys = [k for k in whole if k.startswith(("test_", "val_", "epoch["))]
            assert {k: got[k] for k in keys} == {k: whole[k] for k in keys}, cfg.run_id
    finally:
        torch.set_num_threads(threads)


def _copy_checkout(dest: Path) -> None:
    """The tracked and untracked (not ignored) files of this checkout, copied to ``dest``."""
    files = _sh("git", "-C", str(ROOT), "ls-files", "-z", "-co", "--exclude-standard").split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def test_required_runs_in_a_first_array_from_a_path_with_a_space(partition, tmp_path):
    """ReconBoost from a checkout whose path has a space: its unimodal runs go in a first array, ReconBoost in a
    second one that starts after it; while they are queued a relaunch submits nothing; released, all finish."""
    checkout = tmp_path / "my checkout"
    _copy_checkout(checkout)
    results = checkout / "results dir"
    sets = {**SETS, "train.epochs": 2, "model.resnet_width": 4}
    cmd = [sys.executable, "run_all.py", "--methods", "reconboost", "--results", str(results), "--no-progress"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    cmd += ["--cluster", "slurm", "--partition", partition, "--cpus", "1", "--time", "10", "--lock-wait", "60"]
    held = [*cmd, "--no-wait", "--sbatch", "begin=now+3600"]  # queued, not started, until released

    first = subprocess.run(held, capture_output=True, text=True, cwd=checkout, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    pattern = r"submitted Slurm array (\d+): (\d+) task\(s\), at most \d+ at once(?:, after (\d+))?"
    arrays = re.findall(pattern, first.stdout)
    assert [(n, after) for _, n, after in arrays] == [("2", ""), ("1", arrays[0][0])], first.stdout
    script = next((results / "slurm_logs").rglob("*_submission.sh")).read_text()
    assert f"cd '{checkout}'" in script

    again = subprocess.run(held, capture_output=True, text=True, cwd=checkout, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("still queued in Slurm (job") == 3 and "nothing to submit" in again.stdout
    assert "submitted Slurm array" not in again.stdout

    def queued(array_id: str) -> list[str]:  # (squeue -j fails once Slurm has forgotten a finished job)
        return [i for i in _sh("squeue", "-h", "-r", "-o", "%i").split() if i.split("_")[0] == array_id]

    for array_id, _, _ in arrays:
        for task in queued(array_id):
            _sh("scontrol", "update", f"JobId={task}", "StartTime=now", timeout=60)
    _wait(lambda: not any(queued(a) for a, _, _ in arrays), 600, "both arrays to finish", poll=1.0)

    last = subprocess.run(cmd, capture_output=True, text=True, cwd=checkout, timeout=240)
    assert last.returncode == 0, last.stdout + last.stderr
    assert "nothing to submit" in last.stdout and "suite quick: 3 runs, 3 done" in last.stdout
    df = pd.read_csv(results / "quick.csv").set_index("method")
    assert sorted(df.index) == ["reconboost", "unimodal", "unimodal"] and set(df["status"]) == {"ok"}
    assert sorted(json.loads(df.loc["reconboost", "requires"])) == sorted(df.loc["unimodal", "run_id"])
    logs = "".join(p.read_text() for p in (results / "slurm_logs").rglob("*_log.out"))
    assert "not started" not in logs and logs.count("[reconboost/av_digits/s0] epoch 2/2 ") == 1
