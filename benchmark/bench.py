"""Speed figures (not tests): training-step time of every method as a ratio to ``joint``, loader throughput.

``python run_all.py --bench`` builds every registered method on av_digits in this one process, feeds each the
same pre-drawn training batches, times ``training_step`` after one warm-up step, and writes
``reports/perf.csv``, together with the packed cache's samples per second against decoding the raw files
(``benchmark.bench_data``, on a generated CREMA-D-shaped release). Work a method does outside its steps
(MIE's per-stage SVD, SMV's valuation pass) is not in the step figure; those methods report it in their own
documentation.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.config import build_config
from benchmark.data import to_device
from benchmark.registry import METHODS
from benchmark.results import atomic_write_text


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def time_method(method: str, batches: list[dict], dataset: str, overrides: dict[str, Any]) -> float:
    """Mean seconds of ``training_step`` over ``batches[1:]`` (``batches[0]`` warms up)."""
    from benchmark.trainer import build_run

    extra = METHODS.get(method).bench_overrides
    cfg = build_config(method, dataset, 0, {"train.checkpoint": False, "train.save_model": False, **extra, **overrides})
    setup = build_run(cfg)
    m = setup.method
    m.model.train()
    m.on_epoch_start(0)
    times = []
    for i, batch in enumerate(batches):
        batch = to_device(batch, m.device)
        _sync(m.device)
        t0 = time.perf_counter()
        m.training_step(batch, i)
        _sync(m.device)
        if i > 0:
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times)


def loader_throughput(dataset: str, overrides: dict[str, Any]) -> float:
    """Samples per second of one pass over the training loader (batches only, no model)."""
    from benchmark.trainer import build_run

    setup = build_run(build_config("joint", dataset, 0, {"train.checkpoint": False, **overrides}))
    loader = setup.ctx.loader("train", epoch=0)
    t0 = time.perf_counter()
    n = sum(len(b["label"]) for b in loader)
    return n / (time.perf_counter() - t0)


def run_bench(
    out_dir: Path,
    steps: int = 5,
    methods: list[str] | None = None,
    dataset: str = "av_digits",
    overrides: dict[str, Any] | None = None,
    cache_vs_raw: bool = True,
) -> Path:
    from benchmark.trainer import build_run

    overrides = dict(overrides or {})
    names = [METHODS.resolve(m) for m in (methods or METHODS.names())]
    if "joint" not in names:
        names.insert(0, "joint")
    probe = build_run(build_config("joint", dataset, 0, {"train.checkpoint": False, **overrides}))
    batches = [b for _, b in zip(range(steps + 1), probe.ctx.loader("train", epoch=0))]
    device = probe.ctx.device
    rows = []
    for name in names:
        try:
            secs = time_method(name, batches, dataset, overrides)
            rows.append({"kind": "step", "name": name, "mean_step_ms": 1000 * secs})
        except Exception as exc:  # a broken method is reported, the others are still measured
            rows.append({"kind": "step", "name": name, "error": f"{type(exc).__name__}: {exc}"})
        print(f"{name:14s} {rows[-1].get('mean_step_ms', float('nan')):9.1f} ms/step", flush=True)
    df = pd.DataFrame(rows)
    joint_ms = float(df.loc[df["name"] == "joint", "mean_step_ms"].iloc[0])
    df["ratio_to_joint"] = df["mean_step_ms"] / joint_ms
    sps = loader_throughput(dataset, overrides)
    extra = [{"kind": "loader", "name": dataset, "samples_per_s": sps}]
    if cache_vs_raw:
        from benchmark.bench_data import bench_fixture

        cmp = bench_fixture()  # a CREMA-D-shaped release with real-size frames, prepared, then read both ways
        extra += [
            {"kind": "loader_cache", "name": "crema_d fixture", "samples_per_s": cmp["cached_sps"]},
            {"kind": "loader_raw", "name": "crema_d fixture", "samples_per_s": cmp["raw_sps"]},
        ]
        print(f"crema_d fixture: cache {cmp['cached_sps']} samples/s, raw {cmp['raw_sps']} -> {cmp['speedup']}x")
    df = pd.concat([df, pd.DataFrame(extra)], ignore_index=True)
    df["device"] = str(device)
    df["dataset"] = dataset
    df["steps"] = steps
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "perf.csv"
    atomic_write_text(path, df.to_csv(index=False))
    print(df.to_string(index=False))
    print(f"\nwritten: {path}")
    return path
