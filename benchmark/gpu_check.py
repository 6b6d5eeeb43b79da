"""GPU check (``scripts/gpu_check.sh``): the paper-shape bench on the GPU, then real epochs of ``joint`` and ``mie``
on a CREMA-D-sized packed cache, into ``reports/perf_gpu.csv``.

The cache is written directly (``mmbalance_datasets._packed.write_packed``, the format ``prepare`` writes):
6,698 train / 744 test clips of random float16 spectrograms 257x188 and two random 224x224 uint8 frames each,
so the real training loader (memmaps, random crops and flips, DataLoader workers) feeds the GPU. Per method: samples per
second, peak GPU memory, the GPU-busy fraction (``nvidia-smi`` sampled every 0.2 s; the share of the wall time
spent inside training steps as well), and for ``mie`` the projected time of the full IGM CREMA-D run (450 epochs:
150 audio, 300 visual, 11 stage starts building T).

``--dry-run`` runs every step at toy sizes on any device (CPU included): the test suite runs it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CREMA_D_TRAIN, CREMA_D_TEST = 6698, 744
IGM_EPOCHS = {"audio": 150, "visual": 300}  # (25 audio + 50 visual) x 6 stages pairs
IGM_STAGE_STARTS = 11


def write_crema_d_cache(out: Path, n_train: int, n_test: int, frames: int = 2, seed: int = 0) -> Path:
    """A packed CREMA-D cache of random clips (the real format, labels cycling over the 6 emotions)."""
    from mmbalance_datasets._packed import FieldSpec, Sample, write_packed
    from mmbalance_datasets.crema_d import CremaD

    codes = list(CremaD.classes)
    samples = [
        Sample(
            id=f"{1001 + i}_GEN_{codes[i % 6]}_XX",
            label=i % 6,
            split="train" if i < n_train else "test",
            count=frames,
            extra={"listdir": list(range(frames))},
        )
        for i in range(n_train + n_test)
    ]
    rng = np.random.default_rng(seed)
    spec = CremaD.spec_shape()
    audio = rng.standard_normal((16, *spec)).astype(np.float16)  # a small pool: writing, not drawing, is the cost
    pool = rng.integers(0, 256, (16, frames, CremaD.store_size, CremaD.store_size, 3), dtype=np.uint8)

    def decode(s: Sample) -> dict[str, np.ndarray]:
        k = int(s.id[:4]) % 16
        return {"audio": audio[k], "frames": pool[k]}

    fields = {
        "audio": FieldSpec(spec, "float16"),
        "frames": FieldSpec((CremaD.store_size, CremaD.store_size, 3), "uint8", ragged=True),
    }
    write_packed(out, "crema_d", samples, fields, decode, {"generated": True, "seed": seed}, progress=False)
    return out


class GpuSampler:
    """Mean ``nvidia-smi`` utilisation over a block (NaN where nvidia-smi is absent)."""

    def __init__(self, period_s: float = 0.2) -> None:
        self.period_s = period_s
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.available = shutil.which("nvidia-smi") is not None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout.strip()
                self.values.append(float(out.splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self._stop.wait(self.period_s)

    def __enter__(self) -> GpuSampler:
        if self.available:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) / 100.0 if self.values else math.nan


def run_epochs(method: str, cache: Path, overrides: dict[str, Any], epochs: int) -> dict[str, Any]:
    """Train ``method`` on the generated cache for ``epochs`` epochs; speed, memory, busy fraction."""
    import torch

    from benchmark.config import build_config
    from benchmark.results import ResultStore
    from benchmark.trainer import fit

    ov: dict[str, Any] = {"data.cache": str(cache), "train.epochs": epochs, "train.checkpoint": False, **overrides}
    if method.startswith("mie"):
        ov.setdefault("method.stage_epochs", (1,) * epochs)  # audio, then visual (T built at its start)
    cfg = build_config(method, "crema_d", 0, ov)
    cuda = torch.cuda.is_available() and cfg.train.device in ("auto", "cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp))
        with GpuSampler() as gpu:
            t0 = time.perf_counter()
            row = fit(cfg, store, progress=False)
            wall = time.perf_counter() - t0
        history = json.loads((store.run_dir(cfg.run_id) / "history.json").read_text())
    n_train = len(json.loads((cache / "splits.json").read_text())["train"])
    steps = epochs * math.ceil(n_train / cfg.train.batch_size)
    step_s = (row.get("mean_step_ms") or math.nan) / 1000.0
    t_build = sum(t["moment_pass_s"] + t["decomposition_s"] for t in history["artifacts"].get("t_build", []))
    out = {
        "kind": "epoch",
        "name": method,
        "epochs_run": epochs,
        "batch": cfg.train.batch_size,
        "workers": cfg.train.num_workers,
        "amp": cfg.train.amp,
        "wall_s": wall,
        "train_samples": n_train,
        "samples_per_s": epochs * n_train / wall,
        "step_ms": 1000.0 * step_s,
        "step_samples_per_s": cfg.train.batch_size / step_s if step_s > 0 else math.nan,
        "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else math.nan,
        "gpu_util_mean": gpu.mean,
        "step_busy_fraction": steps * step_s / wall if wall > 0 else math.nan,
        "t_build_s": t_build,
        "device": row.get("device", ""),
        "test_acc": row.get("test_acc[last]"),
    }
    if method == "mie":
        per_epoch = (wall - t_build) / epochs
        out["projected_full_run_h"] = (sum(IGM_EPOCHS.values()) * per_epoch + IGM_STAGE_STARTS * t_build) / 3600.0
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="every step at toy sizes on any device (a test)")
    p.add_argument("--reports", default="reports", help="where perf_gpu.csv goes (default reports/)")
    p.add_argument("--bench-minutes", type=float, default=4.0, help="budget of the paper-shape bench (default 4)")
    p.add_argument("--methods", default="joint,mie", help="methods trained on the generated release")
    p.add_argument("--epochs", type=int, default=2, help="epochs per method (mie: one audio, one visual stage)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader workers")
    p.add_argument("--workdir", default=None, help="where the generated cache goes (default: a temp dir)")
    args = p.parse_args(argv)

    import torch

    from benchmark.bench import run_bench

    reports = Path(args.reports)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.dry_run:
        print("no CUDA device: run on a GPU machine, or pass --dry-run to check the script itself")
        return 2
    common = {"train.device": device, "train.num_workers": args.workers}
    if args.dry_run:  # toy sizes, every code path
        common.update({"model.resnet_width": 2, "data.image_size": 32, "train.eval_batch_size": 64})
        bench_kw = dict(methods=["joint", "mie"], rounds=1, steps=1, batch=2, budget_s=0.0, extra_batches=2)
        n_train, n_test, epochs = 24, 6, 2
        epoch_ov = {**common, "train.max_steps_per_epoch": 2, "train.batch_size": 4}
    else:
        bench_kw = dict(rounds=15, budget_s=60.0 * args.bench_minutes, extra_batches=32)
        n_train, n_test, epochs = CREMA_D_TRAIN, CREMA_D_TEST, args.epochs
        epoch_ov = dict(common)
    print(f"[gpu_check] 1/2 paper-shape bench (crema_d) on {device}", flush=True)
    bench_ov = {k: v for k, v in common.items() if k != "train.num_workers"}
    path = run_bench(
        reports,
        overrides=bench_ov,
        shapes=["crema_d"],
        cache_vs_raw=False,
        train_loader_rate=False,
        csv_name="perf_gpu.csv",
        **bench_kw,
    )
    print(f"[gpu_check] 2/2 real epochs of {args.methods} on a CREMA-D-sized release", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        t0 = time.perf_counter()
        cache = write_crema_d_cache(Path(tmp) / "crema_d", n_train, n_test)
        print(f"  generated cache: {n_train} + {n_test} clips in {time.perf_counter() - t0:.0f} s", flush=True)
        for method in args.methods.split(","):
            row = run_epochs(method.strip(), cache, epoch_ov, epochs)
            rows.append(row)
            proj = row.get("projected_full_run_h")
            print(
                f"  {row['name']}: {row['samples_per_s']:.0f} samples/s ({row['step_samples_per_s']:.0f} in steps), "
                f"peak {row['peak_mem_gb']:.1f} GB, GPU busy {row['gpu_util_mean']:.2f} (steps "
                f"{row['step_busy_fraction']:.2f})" + (f", full IGM CREMA-D run ~{60 * proj:.0f} min" if proj else ""),
                flush=True,
            )
    epochs_df = pd.DataFrame(rows)
    epochs_df.insert(0, "shape", "crema_d release")
    df = pd.read_csv(path)
    df = df[df["shape"] != "crema_d release"]
    df = pd.concat([df, epochs_df], ignore_index=True)
    from benchmark.results import atomic_write_text

    atomic_write_text(path, df.to_csv(index=False))
    print(f"[gpu_check] written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
