"""Sweeps: suite plans, --dry-run/--status, run locks (exactly-once), resume, retry, executors' settings."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmark.config import build_config
from benchmark.data import DatasetConfig, DatasetInfo, MultimodalDataset
from benchmark.method import Method, MethodConfig
from benchmark.registry import DATASETS, METHODS, SUITES
from benchmark.results import ResultStore
from benchmark.runner import (
    RunBusyError,
    execute,
    is_running,
    lock_holder,
    plan,
    plan_counts,
    resolve,
    run_inline,
    run_lock,
    status_table,
)

ROOT = Path(__file__).resolve().parent.parent

# The smallest av_digits run that still trains and evaluates (about a second per epoch on an idle core).
TINY = {
    "train.max_steps_per_epoch": 1,
    "train.batch_size": 16,
    "model.resnet_width": 4,
    "data.val_fraction": 0.05,
    "data.test_fraction": 0.05,
}


def tiny_config(seed: int = 0, epochs: int = 2, method: str = "joint", **extra):
    return build_config(method, "av_digits", seed, {**TINY, "train.epochs": epochs, **extra})


# -- stub methods and datasets: the paper's names, registered only for the duration of a test -------------


@dataclass
class StubMieConfig(MethodConfig):
    tau: float = 0.4
    rho: float = 1e-10
    gm_scope: float = 0.013


def _stub_dataset(name: str, modalities: tuple[str, ...]) -> type:
    class Stub(MultimodalDataset):
        Config = DatasetConfig

        @property
        def info(self) -> DatasetInfo:
            return DatasetInfo(name=name, modalities=modalities, num_classes=3, class_names=("a", "b", "c"))

    Stub.name = name
    return Stub


PAPER_DATASETS = {
    "crema_d": ("audio", "visual"),
    "kinetics_sounds": ("audio", "visual"),
    "twitter2015": ("text", "image"),
    "sarcasm": ("text", "image"),
    "nvgesture": ("rgb", "depth", "flow"),
}
PAPER_METHODS = [
    "ogm",
    "ogm_ge",
    "agm",
    "pmr",
    "mla",
    "reconboost",
    "mmpareto",
    "mie",
    "mie_no_sam",
    "mie_no_gm",
    "mie_plain",
    "mie_no_a_gm",
    "mie_no_v_gm",
    "msam",
    "gblending",
    "mses",
    "mslr",
    "domfn",
    "smv",
]


@pytest.fixture
def paper_stubs():
    """Register stand-ins for every method and dataset the paper suites name; restore the registries after."""
    METHODS.load()
    DATASETS.load()
    saved = {reg: (dict(reg._entries), dict(reg._aliases)) for reg in (METHODS, DATASETS)}
    for name in PAPER_METHODS:
        if name not in METHODS:
            cls = type(f"Stub_{name}", (Method,), {"name": name, "Config": StubMieConfig, "__doc__": "stub"})
            METHODS.add(name, cls)
    for name, modalities in PAPER_DATASETS.items():
        if name not in DATASETS:
            DATASETS.add(name, _stub_dataset(name, modalities))
    yield
    for reg, (entries, aliases) in saved.items():
        reg._entries.clear()
        reg._entries.update(entries)
        reg._aliases.clear()
        reg._aliases.update(aliases)


def _count(configs, **where):
    return sum(all(getattr(c, k) == v for k, v in where.items()) for c in configs)


def test_main_suite_plans_table1(paper_stubs, tmp_path):
    configs = resolve(SUITES.get("main").specs())
    # 17 method entries; unimodal gives one run per modality; 4 two-modality methods skip NVGesture; 3 seeds
    per_two_modal = (16 + 2) * 3
    nvgesture = (16 - 4 + 3) * 3
    assert len(configs) == 4 * per_two_modal + nvgesture == 261
    assert len({c.run_id for c in configs}) == 261
    assert _count(configs, method="unimodal", dataset="nvgesture") == 9
    assert {c.method_cfg.modality for c in configs if c.method == "unimodal" and c.dataset == "crema_d"} == {
        "audio",
        "visual",
    }
    assert _count(configs, method="ogm", dataset="nvgesture") == 0
    assert _count(configs, method="mie", dataset="sarcasm") == 3
    assert {c.seed for c in configs} == {0, 1, 2}
    counts = plan_counts(plan(configs, ResultStore(tmp_path)))
    assert counts == {"runs": 261, "ok": 0, "failed": 0, "running": 0, "todo": 261}


def test_grid_suites_match_the_papers_tables(paper_stubs):
    sens = resolve(SUITES.get("sensitivity").specs())
    # 5 tau + 5 rho points; the default (tau 0.4, rho 1e-10) is in both grids and runs once
    assert len(sens) == 9
    assert sorted({c.method_cfg.tau for c in sens}) == [1e-3, 0.4, 1.3, 20.0, 100.0]
    assert sorted({c.method_cfg.rho for c in sens}) == [1e-15, 1e-10, 1e-8, 1e-6, 1e-4]
    assert all(c.method_cfg.rho == 1e-10 or c.method_cfg.tau == 0.4 for c in sens)
    scope = resolve(SUITES.get("scope").specs())
    assert sorted({c.method_cfg.gm_scope for c in scope}) == [0.0, 0.013, 0.3, 0.5, 1.0] and len(scope) == 15
    ablation = resolve(SUITES.get("ablation").specs())
    assert sorted({c.method for c in ablation}) == ["mie", "mie_no_gm", "mie_no_sam", "mie_plain"]
    interactive = resolve(SUITES.get("interactive").specs())
    assert sorted({c.method for c in interactive}) == ["mie", "mie_no_a_gm", "mie_no_v_gm"]
    clip = resolve(SUITES.get("clip").specs())
    assert all(c.model.backbones == {"text": "clip_text", "image": "clip_image"} for c in clip)
    assert {c.dataset for c in clip} == {"twitter2015"} and len(clip) == (2 + 3) * 3
    timing = resolve(SUITES.get("time").specs())
    # reconboost's two unimodal runs (its requires) join the plan
    methods = ["joint", "mla", "agm", "mie", "reconboost", "smv", "pmr", "unimodal", "unimodal"]
    assert sorted(c.method for c in timing) == sorted(methods)


def test_dry_run_counts_done_failed_todo(tmp_path, capsys):
    import run_all

    results = tmp_path / "results"
    args = ["--methods", "joint", "--seeds", "0,1,2", "--set", "train.epochs=1", "--results", str(results)]
    store = ResultStore(results)
    configs = resolve(SUITES.get("quick").specs(["joint"], None, [0, 1, 2], {"train.epochs": "1"}))
    store.write_result({"run_id": configs[0].run_id, "status": "ok", **configs[0].flat()})
    store.write_result({"run_id": configs[1].run_id, "status": "failed", "error": "boom", **configs[1].flat()})
    assert run_all.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "suite quick: 3 runs, 1 done, 1 failed, 0 running, 1 to do" in out
    assert f"ok       {configs[0].run_id}" in out and f"failed   {configs[1].run_id}" in out


def test_status_table_per_suite(tmp_path, capsys):
    import run_all

    rows = {r["suite"]: r for r in status_table(["quick", "main"], ResultStore(tmp_path))}
    assert rows["quick"]["runs"] == len(METHODS) + 1  # unimodal runs once per av_digits modality
    if "ogm_ge" not in METHODS:  # on a branch without the baselines the plan cannot resolve: say why
        assert rows["main"]["runs"] is None and "unknown method" in rows["main"]["error"]
    assert run_all.main(["--status", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("quick", "main", "ablation", "interactive", "scope", "sensitivity", "clip", "time"):
        assert name in out


# -- run locks ---------------------------------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from benchmark.results import ResultStore
from benchmark.runner import run_lock
with run_lock(ResultStore(sys.argv[1]), "r1"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_is_exclusive_and_dies_with_its_holder(tmp_path):
    store = ResultStore(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert is_running(store, "r1")
        assert lock_holder(store, "r1")["pid"] == proc.pid
        t0 = time.monotonic()
        with pytest.raises(RunBusyError, match="another process"), run_lock(store, "r1", wait_s=0.3, poll_s=0.05):
            pass
        assert time.monotonic() - t0 >= 0.3
        os.kill(proc.pid, signal.SIGKILL)  # kill -9: no cleanup code runs
        proc.wait(10)
        assert not is_running(store, "r1")
        with run_lock(store, "r1"):  # the stale lock file does not block
            assert lock_holder(store, "r1")["pid"] == os.getpid()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_concurrent_execute_trains_once(tmp_path, monkeypatch):
    """Four threads handed the same run: one trains it, the others find it busy or finished.

    Any interleaving may happen (a waiting thread may take the lock first), so the invariant is asserted: one
    training, one row; a thread that waits 5 s never gives up on a 0.3 s training."""
    import benchmark.trainer

    store = ResultStore(tmp_path)
    cfg = tiny_config()
    calls = []

    def fake_fit(config, store=None, **kw):
        calls.append(config.run_id)
        time.sleep(0.3)
        return {"run_id": config.run_id, "status": "ok", "value": len(calls)}

    monkeypatch.setattr(benchmark.trainer, "fit", fake_fit)
    outcomes = []

    def worker(wait):
        try:
            outcomes.append((wait, execute(cfg, store, lock_wait_s=wait)))
        except RunBusyError:
            outcomes.append((wait, "busy"))

    threads = [threading.Thread(target=worker, args=(w,)) for w in (0.0, 0.0, 5.0, 5.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [cfg.run_id]
    assert sum(isinstance(o, dict) for _, o in outcomes) == 1
    assert all(o is None or isinstance(o, dict) for w, o in outcomes if w > 0)  # waiters: trained or found done
    assert all(o in (None, "busy") for _, o in outcomes if not isinstance(o, dict))
    assert store.read(cfg.run_id)["value"] == 1


@pytest.mark.slow
def test_failed_runs_keep_their_error_until_retry(tmp_path, monkeypatch):
    import benchmark.trainer

    store = ResultStore(tmp_path)
    cfg = tiny_config()
    real_fit = benchmark.trainer.fit

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(benchmark.trainer, "fit", broken)
    row = run_inline([cfg], store, progress=False)[0]
    assert row["status"] == "failed" and "disk on fire" in row["error"]
    monkeypatch.setattr(benchmark.trainer, "fit", real_fit)
    assert run_inline([cfg], store, progress=False)[0]["error"] == "RuntimeError: disk on fire"  # not retried
    row = run_inline([cfg], store, retry_failed=True, progress=False, csv_name="s")[0]
    assert row["status"] == "ok" and row["error"] == ""
    import pandas as pd

    df = pd.read_csv(tmp_path / "s.csv")
    assert list(df["run_id"]) == [cfg.run_id] and list(df["status"]) == ["ok"]


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted(tmp_path):
    """A run stopped after epoch 2 (a pre-emption) and resumed ends with exactly the uninterrupted metrics."""
    from benchmark.runner import run_one
    from benchmark.trainer import fit

    cfg = tiny_config(seed=5, epochs=4, **{"train.max_steps_per_epoch": 2})
    whole = run_one(cfg, ResultStore(tmp_path / "a"), progress=False)
    store = ResultStore(tmp_path / "b")
    with pytest.raises(InterruptedError):
        fit(cfg, store, progress=False, stop_after_epoch=2)
    assert store.checkpoint_path(cfg.run_id).is_file() and store.read(cfg.run_id) is None
    resumed = run_one(cfg, store, progress=False)
    keys = [k for k in whole if k.startswith(("test_", "val_", "epoch["))]
    assert len(keys) > 10
    assert {k: resumed[k] for k in keys} == {k: whole[k] for k in keys}
    assert resumed["epochs_run"] == 4 and not store.checkpoint_path(cfg.run_id).exists()
    h_whole = ResultStore(tmp_path / "a").read_history(cfg.run_id)["history"]
    assert store.read_history(cfg.run_id)["history"] == h_whole


# -- executors -----------------------------------------------------------------------------------------------


def test_profiles_and_flags_layer(tmp_path):
    import run_all
    from benchmark.executors import ClusterOptions, load_profile

    toml = tmp_path / "c.toml"
    toml.write_text(
        'default = "gpu"\n[gpu]\npartition = "gpu"\ngpus = 1\ntime_min = 600\naccount = "lab"\n'
        '[gpu.sbatch]\nreservation = "paper"\n[cpu]\npartition = "cpu"\ncpus = 8\n'
    )
    assert load_profile(toml)["partition"] == "gpu"
    assert load_profile(f"{toml}:cpu") == {"partition": "cpu", "cpus": 8}
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"partition": "p", "qos": "high", "array_parallelism": 4}))
    assert load_profile(js)["qos"] == "high"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"partitoin": "p"}))
    with pytest.raises(ValueError, match="partitoin"):
        load_profile(bad)
    args = run_all.parse_args(["--cluster", "slurm", "--profile", str(toml), "--time", "30", "--sbatch", "nice=5"])
    opts = run_all.cluster_options(args)
    assert (opts.partition, opts.gpus, opts.time_min, opts.account) == ("gpu", 1, 30, "lab")
    assert opts.sbatch == {"reservation": "paper", "nice": "5"}
    assert opts.cpus == ClusterOptions().cpus
    assert run_all.main(["--cluster", "slurm", "--profile", str(bad), "--dry-run"]) == 2


def test_slurm_script_carries_every_option(tmp_path, monkeypatch):
    """The sbatch script is built without Slurm (no srun on PATH here), with every option and quoted paths."""
    from benchmark.executors import ClusterOptions, sbatch_script, slurm_parameters

    monkeypatch.setenv("PATH", str(tmp_path))  # no srun/sbatch: the script must not need a cluster
    opts = ClusterOptions(
        partition="gpu",
        gpus=2,
        cpus=6,
        mem_gb=32,
        time_min=90,
        account="lab",
        qos="high",
        constraint="a100",
        array_parallelism=5,
        signal_delay_s=45,
        sbatch={"reservation": "paper"},
        setup=["module load cuda"],
    )
    text = sbatch_script(opts, tmp_path / "logs dir", "mmb-test", 12, after=["77", "78_3"])
    for flag in (
        "--partition=gpu",
        "--gpus-per-node=2",
        "--cpus-per-task=6",
        "--mem=32GB",
        "--time=90",
        "--account=lab",
        "--qos=high",
        "--constraint=a100",
        "--signal=USR2@45",
        "--array=0-11%5",
        "--reservation=paper",
        "--dependency=afterany:77:78_3",
    ):
        assert f"#SBATCH {flag}" in text, flag
    assert "module load cuda" in text
    assert f"cd {shlex.quote(str(ROOT))}" in text and f"export PYTHONPATH={shlex.quote(str(ROOT))}" in text
    assert f"'{tmp_path / 'logs dir'}" in text  # submitit quotes its own paths
    assert slurm_parameters(ClusterOptions(mem_gb=1.5), "x")["mem"] == "1536MB"


def test_job_environment_quotes_a_checkout_path_with_spaces(monkeypatch):
    """`cd` and PYTHONPATH survive a checkout path with spaces and shell characters (run by bash)."""
    import benchmark.executors as ex

    odd = Path("/tmp/my checkout $HOME (copy)")
    monkeypatch.setattr(ex, "ROOT", odd)
    lines = ex._job_environment([])
    script = "\n".join(["cd() { printf 'cd=%s\\n' \"$1\"; }", *lines[:2], 'printf "pp=%s\\n" "$PYTHONPATH"'])
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert out.stdout.splitlines() == [f"cd={odd}", f"pp={odd}"], out.stdout + out.stderr


@pytest.mark.slow
def test_requeued_force_run_continues_from_its_checkpoint(tmp_path):
    """A --force rerun interrupted after epoch 1 (a time limit) is requeued; the requeued task resumes it."""
    from benchmark.executors import RunTask
    from benchmark.trainer import fit

    store = ResultStore(tmp_path)
    cfg = tiny_config(epochs=3)
    old = execute(cfg, store)
    assert old["status"] == "ok"
    store.add_to_suite("s", [cfg.run_id])
    task = RunTask(str(tmp_path), force=True, csv_name="s", launch_id="L1")
    import benchmark.trainer

    real_fit = benchmark.trainer.fit
    try:  # the forced run is stopped after its first epoch, as the time-limit signal would
        benchmark.trainer.fit = lambda c, s=None, **kw: fit(c, s, stop_after_epoch=1, **kw)
        with pytest.raises(InterruptedError):
            task(cfg)
    finally:
        benchmark.trainer.fit = real_fit
    assert store.read(cfg.run_id) is None  # the old row is set aside, not presented as current
    assert (store.run_dir(cfg.run_id) / "result.previous.json").is_file()
    assert store.write_csv("s").read_text().strip() == ""
    assert torch_load(store.checkpoint_path(cfg.run_id))["epoch"] == 0
    delayed = task.checkpoint(cfg)
    again = delayed.function
    assert delayed.args == (cfg,) and again.launch_id == "L1" and again.csv_name == "s"
    out = again(cfg)
    assert out["status"] == "ok"
    row = store.read(cfg.run_id)
    keys = [k for k in old if k.startswith(("test_", "val_", "epoch["))]
    assert {k: row[k] for k in keys} == {k: old[k] for k in keys}  # resumed = the uninterrupted first run
    assert row["launch_id"] == "L1" and list(pd_read(store.write_csv("s"))["run_id"]) == [cfg.run_id]
    hist = store.read_history(cfg.run_id)["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]


def pd_read(path):
    import pandas as pd

    return pd.read_csv(path)


def torch_load(path):
    import torch

    return torch.load(path, weights_only=False)


@pytest.mark.slow
def test_local_executor_runs_each_run_once(tmp_path):
    """Two local worker processes share three runs; every run is trained by exactly one of them."""
    from benchmark.executors import ClusterOptions, launch

    store = ResultStore(tmp_path / "results")
    configs = [tiny_config(seed=s, epochs=1) for s in range(3)]
    outcome = launch(configs, store, cluster="local", options=ClusterOptions(workers=2, lock_wait_s=0), csv_name="loc")
    assert outcome["submitted"] == 3 and len(outcome["jobs"]) == 2 and not outcome["errors"]
    import pandas as pd

    df = pd.read_csv(tmp_path / "results" / "loc.csv")
    assert sorted(df["run_id"]) == sorted(c.run_id for c in configs) and set(df["status"]) == {"ok"}
    holders = {lock_holder(store, c.run_id)["pid"] for c in configs}
    assert len(holders) <= 2 and os.getpid() not in holders
    again = launch(configs, store, cluster="local", options=ClusterOptions(workers=2), csv_name="loc")
    assert again["submitted"] == 0 and again["jobs"] == []
