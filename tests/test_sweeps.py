"""Nothing lost, nothing mixed, nothing stuck (#11): the suite CSV across invocations and concurrent sweeps,
corrupt result files, runs that require others (ReconBoost's unimodal runs), bad values, interrupted and
forced runs, and clear messages instead of tracebacks."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import run_all
from benchmark.config import ConfigError, build_config
from benchmark.registry import SUITES
from benchmark.reports.render import build_tables
from benchmark.results import ResultStore
from benchmark.runner import is_running, lock_holder, resolve, run_inline, run_one
from benchmark.suites import RunSpec

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "reports"
TINY = {
    "train.max_steps_per_epoch": 1,
    "train.batch_size": 16,
    "model.resnet_width": 4,
    "data.val_fraction": 0.05,
    "data.test_fraction": 0.05,
}


def tiny_sets(epochs: int = 1, **extra) -> list[str]:
    out = []
    for k, v in {**TINY, "train.epochs": epochs, **extra}.items():
        out += ["--set", f"{k}={v}"]
    return out


def tiny_specs(methods: list[str], seeds=(0,), epochs: int = 1) -> list:
    return SUITES.get("quick").specs(methods, None, list(seeds), {**TINY, "train.epochs": epochs})


def cli(*args: str, results: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "run_all.py", *args, "--results", str(results), "--no-progress"]
    cmd += ["--reports", str(results.parent / "reports")]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def start_cli(*args: str, results: Path) -> subprocess.Popen:
    cmd = [sys.executable, "run_all.py", *args, "--results", str(results), "--no-progress"]
    cmd += ["--reports", str(results.parent / "reports")]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def fake_fit(calls: list, failures: dict[str, int] | None = None):
    """A stand-in for trainer.fit that records the runs it trains; ``failures[label]`` = times that run fails."""
    failures = failures if failures is not None else {}

    def fit(config, store=None, **kw):
        label = config.method + (f"_{config.method_cfg.modality}" if config.method == "unimodal" else "")
        calls.append(label)
        if failures.get(label, 0) > 0:
            failures[label] -= 1
            raise OSError(28, "No space left on device")
        return {"run_id": config.run_id, "status": "ok", "label": label, **config.flat()}

    return fit


# -- 2. the suite CSV: every run of every invocation, never averaged across configurations -------------------------


@pytest.mark.slow
def test_suite_csv_keeps_the_runs_of_every_invocation(tmp_path):
    """`--methods joint`, then `--methods unimodal`, then `--seeds 1`: quick.csv lists all four runs."""
    results = tmp_path / "results"
    common = ["--results", str(results), "--reports", str(tmp_path / "rep"), "--no-progress", *tiny_sets()]
    assert run_all.main(["--methods", "joint", *common]) == 0
    assert run_all.main(["--methods", "unimodal", *common]) == 0
    assert run_all.main(["--methods", "joint", "--seeds", "1", *common]) == 0
    ids = {c.run_id for c in resolve(tiny_specs(["joint", "unimodal"]) + tiny_specs(["joint"], seeds=(1,)))}
    df = pd.read_csv(results / "quick.csv")
    assert len(ids) == 4 and set(df["run_id"]) == ids and df["run_id"].is_unique
    assert set(df["status"]) == {"ok"}
    # --set changed the suite's configuration: these rows are members, not the suite's own configuration
    assert not df["suite_config"].any()
    members = json.loads((results / "suites" / "quick.json").read_text())["runs"]
    assert set(members) == ids


@pytest.mark.slow
def test_csv_marks_the_suites_own_configuration(tmp_path):
    store = ResultStore(tmp_path)
    own, debug = (build_config("joint", "av_digits", 0, o) for o in ({}, {"train.epochs": 2}))
    for cfg in (own, debug):
        store.write_result({"run_id": cfg.run_id, "status": "ok", "label": "joint", **cfg.flat()})
    store.add_to_suite("s", [own.run_id], own={own.run_id})
    store.add_to_suite("s", [debug.run_id], own=set())
    store.add_to_suite("s", [own.run_id], own=set())  # once own, always own
    df = pd.read_csv(store.write_csv("s")).set_index("run_id")
    assert df.loc[own.run_id, "suite_config"] and not df.loc[debug.run_id, "suite_config"]


def _quick_rows() -> pd.DataFrame:
    return pd.read_csv(FIX / "real_quick" / "quick.csv")


@pytest.mark.slow
def test_tables_never_average_rows_of_different_configurations(tmp_path):
    """The issue's case: a `--set train.epochs=2` debug run (.1838) beside the default run (.8747)."""
    df = _quick_rows()
    joint = df[df["label"] == "joint"].iloc[0]
    default = joint.copy()
    default["test_acc[best_val]"], default["suite_config"], default["config_id"] = 0.8747, True, "aaa"
    debug = joint.copy()
    debug["run_id"], debug["train.epochs"], debug["test_acc[best_val]"] = "joint-debug", 2, 0.1838
    debug["suite_config"], debug["config_id"] = False, "bbb"
    rows = pd.concat([df[df["label"] != "joint"].assign(suite_config=True), pd.DataFrame([default, debug])])
    csv = tmp_path / "quick.csv"
    rows.to_csv(csv, index=False)
    tables = {t.key: t for t in build_tables(csv)}
    summary = dict(tables["summary_av_digits"].rows)
    assert summary["Baseline"][0].value == pytest.approx(0.8747)
    assert summary["Baseline [train.epochs=2]"][0].value == pytest.approx(0.1838)
    assert "never averaged" in tables["summary_av_digits"].caption
    t1 = tables["table1"]
    assert dict(t1.rows)["Baseline"][0].value == pytest.approx(0.8747)
    assert "suite's own configuration" in t1.caption and "1 run(s) of other configurations" in t1.caption

    # the same configuration run with 1 and with 2 threads: two rows, and Table 1 takes the one with more seeds
    a, b, c = (joint.copy() for _ in range(3))
    for row, seed, threads, acc in ((a, 0, 1, 0.40), (b, 1, 1, 0.44), (c, 0, 2, 0.60)):
        row["run_id"], row["seed"], row["torch_threads"] = f"j{seed}{threads}", seed, threads
        row["test_acc[best_val]"] = acc
    rows = pd.concat([df[df["label"] != "joint"], pd.DataFrame([a, b, c])])
    rows.to_csv(csv, index=False)
    tables = {t.key: t for t in build_tables(csv)}
    summary = dict(tables["summary_av_digits"].rows)
    assert summary["Baseline [1 thread]"][0].value == pytest.approx(0.42)
    assert summary["Baseline [2 threads]"][0].value == pytest.approx(0.60)
    assert dict(tables["table1"].rows)["Baseline"][0].value == pytest.approx(0.42)


@pytest.mark.slow
def test_concurrent_sweeps_keep_each_others_rows_and_train_a_required_run_once(tmp_path):
    """Two real sweeps at once: `--methods unimodal` and `--methods reconboost` (which requires the unimodal runs).

    Each unimodal run is trained exactly once (no sweep trains it behind the other's lock), ReconBoost waits for
    them, and the CSV ends with the rows of both sweeps."""
    results = tmp_path / "results"
    a = start_cli("--methods", "unimodal", *tiny_sets(2), results=results)
    b = start_cli("--methods", "reconboost", *tiny_sets(2), results=results)
    outs = [p.communicate(timeout=900) for p in (a, b)]
    for p, (out, err) in zip((a, b), outs):
        assert p.returncode == 0, out[-3000:] + err[-3000:]
        assert "Traceback" not in err
    logs = outs[0][0] + outs[1][0]
    assert logs.count("[unimodal/av_digits/s0] epoch 1/2 ") == 2, logs  # audio once, visual once
    assert logs.count("[reconboost/av_digits/s0] epoch 1/2 ") == 1, logs
    df = pd.read_csv(results / "quick.csv")
    assert sorted(df["method"]) == ["reconboost", "unimodal", "unimodal"] and set(df["status"]) == {"ok"}


# -- 3. a corrupt result file -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_corrupt_result_is_reported_by_path_and_rerun(tmp_path, capsys):
    results = tmp_path / "results"
    store = ResultStore(results)
    good, bad = resolve(tiny_specs(["joint"], seeds=(0, 1)))
    store.write_result({"run_id": good.run_id, "status": "ok", **good.flat()})
    path = store.run_dir(bad.run_id) / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"run_id": "' + bad.run_id + '", "status": "o')  # truncated
    args = ["--methods", "joint", "--seeds", "0,1", *tiny_sets(), "--results", str(results)]
    assert run_all.main([*args, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert str(path) in err and "counts as to do" in err
    assert "2 runs, 1 done, 0 failed, 0 running, 1 to do" in out
    assert run_all.main(["--status", "--results", str(results)]) == 0
    store.add_to_suite("quick", [good.run_id, bad.run_id])
    store.write_csv("quick")  # does not stop on the corrupt file
    rows = run_inline([good, bad], store, progress=False, csv_name="quick")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert set(pd.read_csv(results / "quick.csv")["run_id"]) == {good.run_id, bad.run_id}


# -- 4. runs that require others ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_reconboost_requires_the_sweeps_unimodal_runs(tmp_path, capsys):
    plan = resolve(SUITES.get("quick").specs(["reconboost"], None, None, {"train.epochs": "2"}))
    assert [c.method for c in plan] == ["unimodal", "unimodal", "reconboost"]
    assert all(c.train.epochs == 2 for c in plan)  # the sweep's settings, not a fixed unimodal_epochs
    suite_unimodal = resolve(SUITES.get("quick").specs(["unimodal"], None, None, {"train.epochs": "2"}))
    assert [c.run_id for c in plan[:2]] == [c.run_id for c in suite_unimodal]  # the suite's own unimodal runs
    assert [d.run_id for d in plan[2].requires] == [c.run_id for c in plan[:2]]
    assert (
        run_all.main(["--methods", "reconboost", "--set", "train.epochs=2", "--dry-run", "--results", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "3 runs, 0 done" in out and f"needs {plan[0].run_id}, {plan[1].run_id}" in out
    scratch = build_config("reconboost", "av_digits", 0, {"method.init_from": "scratch"})
    assert scratch.requires == []


@pytest.mark.slow
def test_a_failed_required_run_is_retried_and_forced_like_any_run(tmp_path, monkeypatch, capsys):
    import benchmark.trainer

    calls: list[str] = []
    monkeypatch.setattr(benchmark.trainer, "fit", fake_fit(calls, {"unimodal_audio": 1}))
    store = ResultStore(tmp_path)
    plan = resolve([RunSpec("reconboost", "av_digits", 0, {"train.epochs": 2})])
    rows = run_inline(plan, store, progress=False)
    assert [r.get("status") for r in rows] == ["failed", "ok", None]  # reconboost waits for its audio learner
    assert "which failed (OSError: [Errno 28] No space left on device); rerun both with --retry-failed" in (
        capsys.readouterr().out
    )
    run_inline(plan, store, progress=False)
    assert "already failed, skipped (--retry-failed to rerun)" in capsys.readouterr().out
    assert calls == ["unimodal_audio", "unimodal_visual"]
    rows = run_inline(plan, store, retry_failed=True, progress=False)
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert calls[2:] == ["unimodal_audio", "reconboost"]
    rows = run_inline(plan, store, force=True, progress=False, launch_id="forced")
    assert calls[4:] == ["unimodal_audio", "unimodal_visual", "reconboost"]
    assert {r["launch_id"] for r in rows} == {"forced"}


@pytest.mark.slow
def test_local_workers_finish_required_runs_first_and_survive_a_corrupt_result(tmp_path, capfd):
    from benchmark.executors import ClusterOptions, launch

    store = ResultStore(tmp_path / "results")
    plan = resolve([RunSpec("reconboost", "av_digits", 0, {**TINY, "train.epochs": 2})])
    corrupt = store.run_dir(plan[0].run_id) / "result.json"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text("{")
    out = launch(plan, store, cluster="local", options=ClusterOptions(workers=2), csv_name="quick")
    assert out["submitted"] == 3 and not out["errors"], out
    rows = [store.read(c.run_id) for c in plan]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert str(corrupt) in capfd.readouterr().err
    assert {r["torch_threads"] for r in rows} == {max(1, (os.cpu_count() or 1) // 2)}
    # reconboost ran after its unimodal runs: it stops at set-up if their saved models are not there
    assert rows[2]["requires"] == [plan[0].run_id, plan[1].run_id]


# -- 5. bad values ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "train.max_steps_per_epoch=-1"], "train.max_steps_per_epoch must be >= 0"),
        (["--set", "train.lr=nan"], "train.lr must be a finite number"),
        (["--set", "train.lr=inf"], "train.lr must be a finite number"),
        (["--set", "train.momentum=-inf"], "train.momentum must be a finite number"),
        (["--methods", ""], "--methods '' names nothing"),
        (["--methods", ",,"], "--methods ',,' names nothing"),
        (["--datasets", " , "], "--datasets ' , ' names nothing"),
        (["--seeds", "a"], "--seeds: 'a' is not an integer"),
        (["--seeds", "0,x1"], "--seeds: 'x1' is not an integer"),
    ],
)
def test_bad_values_stop_with_a_message_naming_the_flag(tmp_path, capsys, args, message):
    assert run_all.main([*args, "--results", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r" / "runs").exists()


def test_every_float_of_every_section_must_be_finite():
    with pytest.raises(ConfigError, match="method.alpha must be a finite number"):
        build_config("reconboost", "av_digits", 0, {"method.alpha": "nan", "method.init_from": "scratch"})
    with pytest.raises(ConfigError, match="train.betas must be a finite number"):
        build_config("joint", "av_digits", 0, {"train.betas": "0.9,inf"})


# -- 6. interrupted, forced and corrupt state; clear messages -------------------------------------------------------


def test_results_that_are_not_a_writable_directory(tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    assert run_all.main(["--methods", "joint", "--results", str(afile)]) == 2
    assert f"--results {afile} is not a directory" in capsys.readouterr().err
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    immutable = os.geteuid() == 0  # root writes anywhere: make the directory immutable instead
    if immutable:
        subprocess.run(["chattr", "+i", str(ro)], check=True)
    try:
        with pytest.raises(OSError):
            (ro / "probe").write_text("")
        assert run_all.main(["--methods", "joint", "--results", str(ro / "sub")]) == 2
        assert run_all.main(["--methods", "joint", "--results", str(ro)]) == 2
        assert f"--results {ro} is not writable" in capsys.readouterr().err
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(ro)], check=True)
        ro.chmod(0o755)


@pytest.mark.slow
def test_corrupt_checkpoint_is_set_aside_and_the_run_starts_over(tmp_path, capsys):
    store = ResultStore(tmp_path)
    cfg = resolve(tiny_specs(["joint"], epochs=2))[0]
    ckpt = store.checkpoint_path(cfg.run_id)
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"PK\x03\x04 truncated")
    row = run_one(cfg, store, progress=False)
    assert row["status"] == "ok" and row["epochs_run"] == 2
    assert f"checkpoint {ckpt} cannot be resumed" in capsys.readouterr().err
    assert ckpt.with_name("checkpoint.pt.corrupt").is_file()


def _write_fixture_store(results: Path) -> Path:
    store = ResultStore(results)
    df = _quick_rows()
    for rec in df.to_dict("records"):
        store.write_result({k: v for k, v in rec.items() if not (isinstance(v, float) and math.isnan(v))})
    store.add_to_suite("quick", list(df["run_id"]))
    return store.write_csv("quick")


def test_truncated_or_garbled_csv_stops_report_only_with_a_message(tmp_path, capsys):
    results, reports = tmp_path / "results", tmp_path / "reports"
    csv = _write_fixture_store(results)
    good = csv.read_text()
    args = ["--report-only", "--suite", "quick", "--results", str(results), "--reports", str(reports)]
    assert run_all.main(args) == 0
    csv.write_text(good[: len(good) - 40])  # cut inside the last row
    assert run_all.main(args) == 1
    err = capsys.readouterr().err
    assert f"{csv} is truncated" in err and "--rebuild-csv --suite quick" in err
    csv.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff garbage")
    assert run_all.main(args) == 1
    assert f"{csv} is garbled" in capsys.readouterr().err
    assert (
        run_all.main(["--rebuild-csv", "--suite", "quick", "--results", str(results), "--reports", str(reports)]) == 0
    )
    assert csv.read_text() == good
    assert run_all.main(args) == 0


def _wait(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.mark.slow
def test_ctrl_c_stops_an_inline_sweep_with_a_message(tmp_path):
    results = tmp_path / "results"
    store = ResultStore(results)
    cfg = resolve(tiny_specs(["joint"], epochs=50))[0]
    proc = start_cli("--methods", "joint", *tiny_sets(50), results=results)
    try:
        _wait(lambda: store.checkpoint_path(cfg.run_id).is_file(), 300, "the first epoch")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "Traceback" not in err and "interrupted: finished runs are kept" in err
    assert store.read(cfg.run_id) is None and store.checkpoint_path(cfg.run_id).is_file()


@pytest.mark.slow
def test_sigint_to_the_local_launcher_stops_its_workers(tmp_path):
    results = tmp_path / "results"
    store = ResultStore(results)
    configs = resolve(tiny_specs(["joint"], seeds=(0, 1), epochs=200))
    proc = start_cli("--methods", "joint", "--seeds", "0,1", *tiny_sets(200), "--cluster", "local", results=results)
    try:
        _wait(lambda: all(is_running(store, c.run_id) for c in configs), 300, "both workers to hold their run")
        workers = [lock_holder(store, c.run_id)["pid"] for c in configs]
        assert proc.pid not in workers
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "Traceback" not in err and "local workers stopped" in err

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie (exited, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

    _wait(lambda: all(gone(p) for p in workers), 60, "the workers to exit")
    assert not any(is_running(store, c.run_id) for c in configs)


def test_store_lock_and_state_files_are_git_ignored():
    paths = ["results/.lock", "results/suites/quick.json", "results/runs/x/.slurm_job", "results/runs/x/.lock"]
    paths += ["results/runs/x/result.previous.json", "results/runs/x/checkpoint.pt.corrupt"]
    out = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.split() == paths, out.stdout + out.stderr
    assert re.search(r"^results/\.lock$", (ROOT / ".gitignore").read_text(), re.M)
