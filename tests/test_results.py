"""Result store: atomic writes, exactly one row per run, failed runs recorded, finished runs skipped."""

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from conftest import short_config

from benchmark.results import atomic_write_text
from benchmark.runner import run_inline, run_one


def test_interrupted_write_leaves_old_file_and_no_partial(tmp_path, monkeypatch):
    target = tmp_path / "rows.csv"
    atomic_write_text(target, "old,complete\n")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new," * 10_000)
    assert target.read_text() == "old,complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.csv"]  # temporary file removed


def test_killed_writer_never_leaves_a_truncated_file(tmp_path):
    """A process killed in the middle of writing leaves the previous content intact."""
    target = tmp_path / "result.json"
    atomic_write_text(target, json.dumps({"status": "ok"}))
    script = textwrap.dedent(f"""
        import os, signal
        from benchmark import results
        real_fsync = os.fsync
        def die(fd):
            os.kill(os.getpid(), signal.SIGKILL)  # killed after writing, before the rename
        os.fsync = die
        results.atomic_write_text({str(target)!r}, "x" * 1_000_000)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), capture_output=True)
    assert proc.returncode == -9
    assert json.loads(target.read_text()) == {"status": "ok"}


@pytest.mark.slow
def test_run_is_written_once_and_skipped_unless_forced(store):
    cfg = short_config("joint", **{"train.max_steps_per_epoch": 2})
    row = run_one(cfg, store)
    assert row["status"] == "ok" and store.is_done(cfg.run_id)
    first = (store.run_dir(cfg.run_id) / "result.json").stat().st_mtime_ns
    again = run_one(cfg, store)
    assert again["run_id"] == cfg.run_id
    assert (store.run_dir(cfg.run_id) / "result.json").stat().st_mtime_ns == first  # not rerun
    run_one(cfg, store, force=True)
    assert (store.run_dir(cfg.run_id) / "result.json").stat().st_mtime_ns != first
    history = store.read_history(cfg.run_id)
    assert len(history["history"]) == 1 and "acc_audio" in history["history"][0]["test"]
    assert not store.checkpoint_path(cfg.run_id).exists()  # removed once the run finished


@pytest.mark.slow
def test_nan_loss_is_a_failed_run_and_the_sweep_goes_on(store):
    bad = short_config("joint", **{"train.lr": 1e30, "train.max_steps_per_epoch": 5})
    good = short_config("joint", **{"train.max_steps_per_epoch": 2})
    rows = run_inline([bad, good], store, progress=False, csv_name="sweep")
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert "NonFiniteLossError" in rows[0]["error"] and "lower train.lr" in rows[0]["error"]
    df = pd.read_csv(store.root / "sweep.csv")
    assert sorted(df["status"]) == ["failed", "ok"] and df["run_id"].is_unique
    # a failed run is not retried unless asked
    assert run_one(bad, store)["status"] == "failed"
    assert store.status(bad.run_id) == "failed"


def test_non_finite_evaluation_names_the_split_instead_of_a_metric_crash():
    # training loss stays finite (train-mode BatchNorm uses batch statistics) but the running statistics are NaN:
    # evaluation must stop with our message, not scikit-learn's "Input contains NaN" from the MAP
    import torch

    from benchmark.evaluation import NonFiniteOutputError
    from benchmark.trainer import fit

    def poison_running_mean(method):
        bn = next(m for m in method.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        bn.running_mean.fill_(float("nan"))

    cfg = short_config("joint", **{"train.max_steps_per_epoch": 1, "train.checkpoint": False})
    with pytest.raises(NonFiniteOutputError, match="non-finite .* logits on the val split.*lower train.lr"):
        fit(cfg, None, progress=False, on_model=poison_running_mean)


def test_csv_has_labelled_selection_rules_and_provenance(store):
    cfg = short_config("joint", epochs=2, **{"train.max_steps_per_epoch": 2})
    run_one(cfg, store)
    df = pd.read_csv(store.write_csv("t", [cfg.run_id]))
    row = df.iloc[0]
    for rule in ("best_val", "last", "best_test"):
        for metric in ("acc", "map", "macro_f1", "acc_audio", "acc_visual"):
            assert 0.0 <= row[f"test_{metric}[{rule}]"] <= 1.0
        assert row[f"epoch[{rule}]"] in (1, 2)
    assert row["epoch[last]"] == 2
    assert row["test_acc[best_test]"] >= row["test_acc[best_val]"] - 1e-12
    for col in (
        "train.lr",
        "method",
        "dataset",
        "seed",
        "wall_time_s",
        "mean_step_ms",
        "device",
        "torch_version",
        "git_commit",
    ):
        assert col in df.columns
    assert row["backbone.audio"] == "resnet18_audio" and row["backbone.visual"] == "resnet18_visual"


def test_packed_cache_metadata_goes_through_the_fsynced_atomic_write(tmp_path, monkeypatch):
    """The dataset cache's manifest, bad.json and splits.json use results' atomic write (fsync, then rename)."""
    import numpy as np

    from mmbalance_datasets import _packed

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    samples = [_packed.Sample(id=str(i), label=i % 2, split="train" if i < 4 else "test") for i in range(6)]
    out = tmp_path / "cache"
    summary = _packed.write_packed(
        out,
        "toy",
        samples,
        {"x": _packed.FieldSpec((2,), "float32")},
        lambda s: {"x": np.full(2, s.label, np.float32)},
        {},
        progress=False,
        val_fraction=0.0,
    )
    assert summary["done"] == 6 and len(synced) >= 3  # manifest.json, bad.json (each flush), splits.json
    assert sorted(p.name for p in out.iterdir()) == ["bad.json", "manifest.json", "splits.json", "status.npy", "x.npy"]
