"""Loader benchmark: samples per second from the packed cache vs decoding every sample from the raw files.

``python -m benchmark.bench_data`` generates a CREMA-D-shaped raw release (2.5-s 16 kHz wavs, 480x360 JPEG
frames, as the real release), prepares its cache, then times the test split both ways with the same
evaluation transforms. ``bench_dataset(name, root, cache)`` does the same on any prepared release.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmark.config import build_config
from benchmark.registry import DATASETS


def _rate(dataset: Any, limit: int, repeats: int = 2) -> float:
    """Best of ``repeats`` passes over the first ``limit`` items, single-threaded like a DataLoader worker."""
    import torch

    n = min(limit, len(dataset))
    best = 0.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in range(n):
                dataset[i]
            best = max(best, n / max(time.perf_counter() - t0, 1e-9))
    finally:
        torch.set_num_threads(threads)
    return best


def bench_dataset(name: str, root: str, cache: str, limit: int = 64, split: str = "train") -> dict[str, Any]:
    """{"cached_sps", "raw_sps", "speedup"} for ``split`` of a prepared dataset (evaluation transforms)."""
    cfg = build_config("joint", name, 0, {"data.root": root, "data.cache": cache})
    ds = DATASETS.get(name)(cfg.data_cfg)
    if not hasattr(ds, "raw_split"):
        raise ValueError(f"dataset {name!r} has no raw_split() to compare with")
    cached = ds.split(split)
    cached.train = False  # the same deterministic transform on both sides
    raw = ds.raw_split(split)
    cached_sps, raw_sps = _rate(cached, limit), _rate(raw, limit)
    return {
        "dataset": name,
        "samples": min(limit, len(cached)),
        "cached_sps": round(cached_sps, 1),
        "raw_sps": round(raw_sps, 1),
        "speedup": round(cached_sps / raw_sps, 2),
    }


def bench_fixture(workdir: str | None = None, per_class: int = 4, limit: int = 24) -> dict[str, Any]:
    """Generate a CREMA-D-like release with real-size frames, prepare it and run :func:`bench_dataset`."""
    from mmbalance_datasets._fixtures import make_crema_d
    from mmbalance_datasets.crema_d import CremaD

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        base = Path(tmp)
        make_crema_d(base / "raw", per_class=per_class, with_video=False, with_bad=False, frame_size=(480, 360))
        CremaD.prepare(str(base / "raw"), str(base / "cache"), progress=False)
        return bench_dataset("crema_d", str(base / "raw"), str(base / "cache"), limit=limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--limit", type=int, default=24)
    args = parser.parse_args()
    row = bench_fixture(per_class=args.per_class, limit=args.limit)
    print(
        f"{row['dataset']}: cached {row['cached_sps']} samples/s, raw {row['raw_sps']} samples/s "
        f"-> {row['speedup']}x on {row['samples']} samples"
    )


if __name__ == "__main__":
    main()
