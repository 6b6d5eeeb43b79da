"""The benchmark machinery (the figures themselves are timings and are not asserted)."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.bench import EXTRAS, SHAPES, Shape, SyntheticDataset, bench_shape, ratio_spread, run_bench
from benchmark.config import build_config
from benchmark.registry import BACKBONES, DATASETS, METHODS
from benchmark.trainer import build_run

ROOT = Path(__file__).resolve().parents[1]
# CREMA-D's config and method defaults at toy tensor sizes
TINY = Shape(
    dataset="crema_d",
    batch=4,
    cpu_batch=4,
    inputs={"audio": (1, 16, 12), "visual": (3, 1, 16, 16)},
    sizes=(60, 6, 6),
    overrides={"model.resnet_width": 2},
)


def test_ratios_are_taken_per_round_then_medianed():
    # a load drift that doubles every time in round 3 cancels in the per-round ratio
    assert ratio_spread([2.0, 2.2, 4.0], [1.0, 1.0, 2.0]) == (2.0, 2.0, 2.2)
    assert all(math.isnan(v) for v in ratio_spread([], []))  # nothing measured


def test_bench_writes_ratios_with_spread_and_loader_throughput(tmp_path):
    path = run_bench(
        tmp_path,
        steps=1,
        rounds=2,
        methods=["unimodal"],
        cache_vs_raw=False,
        train_loader_rate=False,
        overrides={"model.resnet_width": 2},
        log=lambda s: None,
    )
    df = pd.read_csv(path)
    steps = df[df["kind"] == "step"].set_index("name")
    assert set(steps.index) == {"joint", "unimodal_audio", "unimodal_visual"}  # one row per expanded run
    assert (steps["ratio_median"]["joint"], steps["ratio_min"]["joint"], steps["ratio_max"]["joint"]) == (1, 1, 1)
    assert (steps["rounds"] == 2).all() and (steps["ms_median"] > 0).all()
    assert (steps["ratio_min"] <= steps["ratio_median"]).all() and (steps["ratio_median"] <= steps["ratio_max"]).all()
    loader = df[df["kind"] == "loader"]
    assert len(loader) == 1 and loader["samples_per_s"].iloc[0] > 0
    assert set(df["shape"]) == {"av_digits"}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_synthetic_data_has_the_real_info_and_sizes(shape):
    spec = SHAPES[shape]
    cfg = build_config("joint", spec.dataset, 0, dict(spec.overrides))
    ds = SyntheticDataset(cfg.data_cfg, spec, train_samples=6, batch=3)
    real = DATASETS.get(spec.dataset)(cfg.data_cfg).info
    assert ds.info == real
    batch = ds.split("train").__getitems__([0, 1, 5])
    for m, want in spec.inputs.items():
        got = tuple(batch[m].shape[1:])
        assert got == ((want[1],) if want[0] == "tokens" else want)
    assert batch["label"].tolist() == [0, 1, 5 % real.num_classes]
    assert len(ds.split("val")) >= 2 and len(ds.split("test")) >= 2
    for name in spec.overrides.get("model.backbones", {}).values():
        assert name in BACKBONES


def test_crema_d_shape_builds_the_papers_models():
    """At CREMA-D's shapes the methods get ResNet18 width 64 (512-d features) and the dataset's own defaults."""
    spec = SHAPES["crema_d"]
    cfg = build_config("mie", "crema_d", 0, {**spec.overrides, "train.batch_size": 2})
    assert cfg.method_cfg.stage_epochs[:2] == (25, 50)  # the method's crema_d defaults apply
    run = build_run(cfg, dataset=SyntheticDataset(cfg.data_cfg, spec, 4, 2))
    assert run.method.model.encoders["audio"].out_dim == 512
    assert run.dataset.info.name == "crema_d" and len(run.ctx.splits["train"]) == 4


def test_bench_shape_times_steps_and_extras_on_a_tiny_shape(monkeypatch, tmp_path):
    """The paper-shape path end to end at toy sizes: synthetic data, the dataset's method defaults, the extras."""
    monkeypatch.setitem(SHAPES, "crema_d", TINY)
    methods = ["mie", "pmr", "gblending", "smv", "mses", "unimodal"]
    df = bench_shape("crema_d", methods=methods, rounds=2, budget_s=0, extra_batches=2, log=lambda s: None)
    steps = df[df["kind"] == "step"].set_index("name")
    assert not steps["error"].fillna("").astype(bool).any(), steps["error"].to_dict()
    assert (steps["rounds"] == 2).all() and steps.loc["joint", "ratio_median"] == 1.0
    extras = df[df["kind"] == "extra"].set_index("name")
    assert set(extras.index) == set(EXTRAS) & set(methods)
    assert (extras["extra_s"] > 0).all() and (extras["extra_samples"] == 8).all()
    assert (extras["extra_fraction"] > 0).all() and (extras["extra_fraction_full"] > 0).all()
    assert 0 < extras.loc["mie", "extra_fixed_s"] <= extras.loc["mie", "extra_s"]  # the eigendecompositions
    assert (df["batch"] == 4).all() and (df["shape"] == "crema_d").all()


def test_a_broken_method_is_reported_and_the_others_measured(monkeypatch):
    monkeypatch.setitem(SHAPES, "crema_d", TINY)

    def broken(self, batch, step):
        raise RuntimeError("boom")

    monkeypatch.setattr(METHODS.get("ogm"), "training_step", broken)
    df = bench_shape("crema_d", methods=["ogm"], rounds=1, budget_s=0, extras=False, log=lambda s: None)
    steps = df.set_index("name")
    assert "boom" in steps.loc["ogm", "error"] and steps.loc["joint", "ms_median"] > 0


def test_unknown_shape_is_an_error():
    with pytest.raises(ValueError, match="crema_d"):
        bench_shape("cremad", methods=["joint"])


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    """scripts/gpu_check.sh --dry-run: the bench rows and one real epoch per method (toy sizes, this device)."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--reports", str(tmp_path), "--workers", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=1800,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    df = pd.read_csv(tmp_path / "perf_gpu.csv")
    assert {"joint", "mie"} <= set(df[df["kind"] == "step"]["name"])
    epochs = df[df["kind"] == "epoch"].set_index("name")
    assert set(epochs.index) == {"joint", "mie"}
    assert (epochs["samples_per_s"] > 0).all() and (epochs["epochs_run"] == 2).all()
    assert epochs.loc["mie", "projected_full_run_h"] > 0 and epochs.loc["mie", "t_build_s"] > 0
    assert torch.cuda.is_available() or epochs["peak_mem_gb"].isna().all()
