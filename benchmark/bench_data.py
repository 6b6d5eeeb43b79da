"""Loader benchmark: samples per second from the packed cache vs decoding every sample from the raw files.

``python -m benchmark.bench_data`` generates a CREMA-D-shaped raw release (2.5-s 16 kHz wavs, 480x360 JPEG
frames, as the real release), prepares its cache, then times the test split both ways with the same
evaluation transforms. ``bench_dataset(name, root, cache)`` does the same on any prepared release.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


def uint8_item(split: Any, i: int, size: int = 224) -> dict[str, torch.Tensor]:
    """The proposed training item (docs/performance.md, not yet the datasets' code): the stored uint8 frame is
    cropped, resized and flipped as uint8 and returned as uint8; float conversion and ImageNet normalisation move
    to the device (one fused op on the whole batch). Same draws as ``mmbalance_datasets._transforms.frames_to_tensor``;
    audio stays float16."""
    import torch
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF

    cache = split.cache
    row = int(split.rows[i])
    audio = torch.from_numpy(np.array(cache.array("audio")[row])).unsqueeze(0)  # float16, as stored
    stored = cache.items("frames", row)
    pick = int(torch.randint(len(stored), (1,)))
    f = torch.from_numpy(np.asarray(stored[pick])).permute(2, 0, 1)  # (3, H, W) uint8, a view
    top, left, h, w = v2.RandomResizedCrop.get_params(f, scale=[0.08, 1.0], ratio=[3 / 4, 4 / 3])
    f = TF.resized_crop(f, top, left, h, w, [size, size], antialias=True)
    if torch.rand(1).item() < 0.5:
        f = TF.horizontal_flip(f)
    return {"audio": audio, "visual": f.unsqueeze(1)}


def workers_needed(rate_per_worker: float, target: float = 3000.0) -> int:
    """DataLoader workers that sustain ``target`` samples per second at ``rate_per_worker`` each."""
    return int(math.ceil(target / rate_per_worker)) if rate_per_worker > 0 else -1


def bench_fixture(
    workdir: str | None = None, per_class: int = 4, limit: int = 24, train: bool = False
) -> dict[str, Any]:
    """Generate a CREMA-D-like release with real-size frames (480x360), prepare it and run :func:`bench_dataset`;
    ``train``: also the training items (random crops and flips), the current ones and :func:`uint8_item`."""
    from benchmark.synthetic_release import make_crema_d
    from mmbalance_datasets.crema_d import CremaD

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        base = Path(tmp)
        make_crema_d(base / "raw", per_class=per_class, with_video=False, with_bad=False, frame_size=(480, 360))
        CremaD.prepare(str(base / "raw"), str(base / "cache"), progress=False)
        row = bench_dataset("crema_d", str(base / "raw"), str(base / "cache"), limit=limit)
        if train:
            cfg = build_config(
                "joint", "crema_d", 0, {"data.root": str(base / "raw"), "data.cache": str(base / "cache")}
            )
            split = DATASETS.get("crema_d")(cfg.data_cfg).split("train")
            row["train_sps"] = round(_rate(split, limit, repeats=3), 1)
            row["workers_for_3000"] = workers_needed(row["train_sps"])

            class Uint8:
                def __len__(self) -> int:
                    return len(split)

                def __getitem__(self, i: int) -> Any:
                    return uint8_item(split, i)

            row["train_uint8_sps"] = round(_rate(Uint8(), limit, repeats=3), 1)
            row["workers_for_3000_uint8"] = workers_needed(row["train_uint8_sps"])
        return row


def _former_normalised_channels(frames: np.ndarray, mean: Any, std: Any) -> np.ndarray:
    """The normalisation before the lookup table (the tensor arithmetic), channels first like the table's
    output: the baseline of :func:`normalisation_ab`."""
    from mmbalance_datasets._transforms import normalize_arithmetic

    return normalize_arithmetic(frames, mean, std).movedim(-3, 0).contiguous().numpy()


def normalisation_ab(rounds: int = 12, per_class: int = 4, workdir: str | None = None) -> dict[str, Any]:
    """Training items per second per worker on the CREMA-D fixture, the table-lookup normalisation (now) against
    the former tensor arithmetic, in ``rounds`` interleaved passes over the training split (order alternated),
    one thread: {"before": [...], "now": [...]} samples/s per pass, with their medians."""
    import statistics

    import mmbalance_datasets._transforms as transforms
    from benchmark.synthetic_release import make_crema_d
    from mmbalance_datasets.crema_d import CremaD

    now_fn = transforms._normalized_channels
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        base = Path(tmp)
        make_crema_d(base / "raw", per_class=per_class, with_video=False, with_bad=False, frame_size=(480, 360))
        CremaD.prepare(str(base / "raw"), str(base / "cache"), progress=False)
        cfg = build_config("joint", "crema_d", 0, {"data.root": str(base / "raw"), "data.cache": str(base / "cache")})
        split = DATASETS.get("crema_d")(cfg.data_cfg).split("train")
        rates: dict[str, list[float]] = {"before": [], "now": []}
        try:
            for k in range(rounds + 1):  # the first round warms both paths up and is not kept
                for name in ("before", "now") if k % 2 == 0 else ("now", "before"):
                    transforms._normalized_channels = _former_normalised_channels if name == "before" else now_fn
                    rate = _rate(split, len(split), repeats=1)
                    if k:
                        rates[name].append(rate)
        finally:
            transforms._normalized_channels = now_fn
    out: dict[str, Any] = dict(rates)
    for name in ("before", "now"):
        out[f"{name}_median"] = statistics.median(rates[name])
        out[f"{name}_workers_for_3000"] = workers_needed(out[f"{name}_median"])
    out["items"] = len(split)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument(
        "--ab", type=int, metavar="ROUNDS", help="compare the training items' normalisation with the former one"
    )
    args = parser.parse_args()
    if args.ab:
        r = normalisation_ab(rounds=args.ab, per_class=args.per_class)
        for name in ("before", "now"):
            v, med, workers = r[name], r[f"{name}_median"], r[f"{name}_workers_for_3000"]
            print(
                f"{name:>6}: median {med:.0f} samples/s per worker (min {min(v):.0f}, max {max(v):.0f}; {len(v)} "
                f"passes over {r['items']} training items) -> {workers} workers for 3000/s"
            )
        print(f"ratio now / before: {r['now_median'] / r['before_median']:.2f}")
        return
    row = bench_fixture(per_class=args.per_class, limit=args.limit, train=True)
    print(
        f"{row['dataset']}: cached {row['cached_sps']} samples/s, raw {row['raw_sps']} samples/s "
        f"-> {row['speedup']}x on {row['samples']} samples (evaluation transforms, one thread)"
    )
    print(
        f"training items (random crop + flip), one worker: {row['train_sps']} samples/s -> "
        f"{row['workers_for_3000']} workers for 3000 samples/s; uint8 crop/flip, normalised on the device: "
        f"{row['train_uint8_sps']} samples/s -> {row['workers_for_3000_uint8']} workers"
    )


if __name__ == "__main__":
    main()
