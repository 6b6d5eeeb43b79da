"""The packed cache of the downloaded datasets (writer and reader) and the base class of the datasets read from it.

The packed cache
----------------
``prepare`` turns a raw release into one directory that training reads with no decoding:

* ``manifest.json`` -- dataset name, feature parameters, fields (shape, dtype, ragged or not) and one entry per
  sample (``id``, ``label``, ``split`` and, for ragged fields, the item ``count``);
* ``<field>.npy`` -- one memory-mapped array per field: spectrograms as float16, frames as uint8 (N, H, W, 3),
  text as int32 token ids. Ragged fields (a variable number of frames per clip) are stored flat, the
  manifest's counts give the offsets;
* ``status.npy`` -- int8 per sample: 0 still to do, 1 done, 2 bad input. It is flushed as work proceeds, so an
  interrupted ``prepare`` resumes where it stopped;
* ``bad.json`` -- the bad inputs and why; ``splits.json`` -- the sample ids of train / val / test.

The raw release is only ever read.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from benchmark.config import NOT_IDENTITY
from benchmark.data import DatasetConfig, DatasetNotFoundError, MultimodalDataset
from benchmark.results import atomic_write_text

CACHE_VERSION = 1
PENDING, DONE, BAD = 0, 1, 2


class CacheMismatchError(RuntimeError):
    """An existing cache was prepared with other parameters than the ones asked for."""


def default_cache_dir(name: str) -> Path:
    """``$MMB_DATA_CACHE/<name>`` or ``~/.cache/mmbalance/<name>``."""
    base = os.environ.get("MMB_DATA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mmbalance")
    return Path(base) / name


# -- writing -----------------------------------------------------------------------------------------------


@dataclass
class FieldSpec:
    """One array of the cache: per-item shape and dtype; ``ragged`` fields hold ``count`` items per sample."""

    shape: tuple[int, ...]
    dtype: str
    ragged: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, "ragged": self.ragged}


@dataclass
class Sample:
    """One entry of a raw release: an id, a label, its official split and what ``decode`` needs to read it."""

    id: str
    label: int
    split: str
    source: dict[str, Any] = field(default_factory=dict)
    count: int = 1  # items of the ragged fields (e.g. frames)
    extra: dict[str, Any] = field(default_factory=dict)  # kept in the manifest (e.g. listdir order)


def _progress(total: int, description: str, enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("bad: {task.fields[bad]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def write_packed(
    out: str | os.PathLike,
    name: str,
    samples: Sequence[Sample],
    fields: dict[str, FieldSpec],
    decode: Callable[[Sample], dict[str, np.ndarray]],
    params: dict[str, Any],
    *,
    progress: bool = True,
    flush_every: int = 64,
    val_fraction: float = 0.1,
    val_seed: int = 0,
) -> dict[str, Any]:
    """Decode every sample into the packed cache at ``out``; resumes an interrupted run with the same params.

    ``decode(sample)`` returns one array per field (ragged fields: ``count`` items stacked on axis 0) or raises
    any exception for a bad input: the sample is marked bad, the reason kept in ``bad.json``, and work goes on.
    Returns a summary ``{"done": n, "bad": {id: reason}, "out": path}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "version": CACHE_VERSION,
        "dataset": name,
        "params": params,
        "fields": {k: v.to_json() for k, v in fields.items()},
        "samples": [
            {"id": s.id, "label": int(s.label), "split": s.split, "count": int(s.count), **s.extra} for s in samples
        ],
    }
    mpath = out / "manifest.json"
    resume = mpath.exists()
    if resume:
        old = json.loads(mpath.read_text())
        same = {k: old.get(k) for k in ("version", "dataset", "params", "fields")} == {
            k: json.loads(json.dumps(manifest[k])) for k in ("version", "dataset", "params", "fields")
        }
        if not same or [s["id"] for s in old["samples"]] != [s.id for s in samples]:
            raise CacheMismatchError(
                f"{out} holds a cache prepared from other inputs or parameters; remove it or choose another --out"
            )
    else:
        atomic_write_text(mpath, json.dumps(manifest))

    n = len(samples)
    counts = np.array([s.count for s in samples], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    arrays = {}
    for key, spec in fields.items():
        rows = int(offsets[-1]) if spec.ragged else n
        path = out / f"{key}.npy"
        mode = "r+" if resume and path.exists() else "w+"
        arrays[key] = np.lib.format.open_memmap(path, mode=mode, dtype=np.dtype(spec.dtype), shape=(rows, *spec.shape))
    spath = out / "status.npy"
    status = np.lib.format.open_memmap(
        spath, mode="r+" if resume and spath.exists() else "w+", dtype=np.int8, shape=(n,)
    )
    bpath = out / "bad.json"
    bad: dict[str, str] = json.loads(bpath.read_text()) if resume and bpath.exists() else {}

    def flush() -> None:
        for arr in arrays.values():
            arr.flush()
        status.flush()
        atomic_write_text(bpath, json.dumps(bad, indent=1))

    todo = [i for i in range(n) if status[i] == PENDING]
    with _progress(n, name, progress) as bar:
        task = bar.add_task(f"prepare {name}", total=n, completed=n - len(todo), bad=len(bad))
        try:
            for k, i in enumerate(todo):
                s = samples[i]
                try:
                    values = decode(s)
                    for key, spec in fields.items():
                        v = np.asarray(values[key])
                        if spec.ragged:
                            want = (s.count, *spec.shape)
                            if v.shape != want:
                                raise ValueError(f"{key}: decoded shape {v.shape}, expected {want}")
                            arrays[key][offsets[i] : offsets[i + 1]] = v
                        else:
                            if v.shape != spec.shape:
                                raise ValueError(f"{key}: decoded shape {v.shape}, expected {spec.shape}")
                            arrays[key][i] = v
                    status[i] = DONE
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # a bad input: record it and go on
                    status[i] = BAD
                    bad[s.id] = f"{type(exc).__name__}: {exc}"
                bar.update(task, advance=1, bad=len(bad))
                if (k + 1) % flush_every == 0:
                    flush()
        finally:
            flush()
    ok = [s for s, st in zip(samples, status) if st == DONE]
    atomic_write_text(out / "splits.json", json.dumps(make_splits(ok, val_fraction, val_seed)))
    return {"done": int((status == DONE).sum()), "bad": bad, "out": str(out)}


def make_splits(samples: Sequence[Sample], val_fraction: float, seed: int) -> dict[str, Any]:
    """Official train/test (and val where the release has one); otherwise val is carved from train.

    The carve is stratified by label with a fixed seed, so every machine derives the same file.
    """
    by_split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for s in samples:
        by_split[s.split].append(s.id)
    carved = False
    if not by_split["val"] and val_fraction > 0:
        carved = True
        rng = np.random.default_rng(seed)
        labels = {s.id: s.label for s in samples}
        train = by_split["train"]
        val: set[str] = set()
        for c in sorted({labels[i] for i in train}):
            ids = [i for i in train if labels[i] == c]
            k = int(math.floor(len(ids) * val_fraction + 0.5))
            if len(ids) > 1:
                k = min(max(k, 1), len(ids) - 1)
            else:
                k = 0
            val.update(rng.permutation(ids)[:k].tolist())
        by_split["val"] = [i for i in train if i in val]
        by_split["train"] = [i for i in train if i not in val]
    return {"val_carved_from_train": carved, "val_fraction": val_fraction, "val_seed": seed, **by_split}


# -- reading -----------------------------------------------------------------------------------------------


class PackedCache:
    """Read side of the cache: memory-mapped arrays, per-sample offsets and the split lists."""

    def __init__(self, path: str | os.PathLike, name: str, prepare_hint: str) -> None:
        self.path = Path(path)
        mpath = self.path / "manifest.json"
        if not mpath.exists() or not (self.path / "splits.json").exists():
            raise DatasetNotFoundError(
                f"no prepared cache of {name!r} in {str(self.path)!r}. {prepare_hint} "
                f"(or point --set data.cache=DIR at an existing cache)."
            )
        self.manifest = json.loads(mpath.read_text())
        self.splits = json.loads((self.path / "splits.json").read_text())
        self.samples = self.manifest["samples"]
        self.row_of = {s["id"]: i for i, s in enumerate(self.samples)}
        counts = np.array([s["count"] for s in self.samples], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.counts = counts
        self.labels = np.array([s["label"] for s in self.samples], dtype=np.int64)
        self.fields = self.manifest["fields"]
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def params(self) -> dict[str, Any]:
        return self.manifest["params"]

    def array(self, key: str) -> np.ndarray:
        if key not in self._arrays:  # opened lazily: each DataLoader worker maps its own view
            self._arrays[key] = np.load(self.path / f"{key}.npy", mmap_mode="r")
        return self._arrays[key]

    def rows(self, split: str) -> np.ndarray:
        return np.array([self.row_of[i] for i in self.splits[split]], dtype=np.int64)

    def items(self, key: str, row: int) -> np.ndarray:
        """All items of a ragged field for one sample (e.g. every stored frame of a clip)."""
        return self.array(key)[self.offsets[row] : self.offsets[row + 1]]

    def __getstate__(self) -> dict[str, Any]:  # memmaps are reopened in worker processes
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state


class CachedSplit(Dataset):
    """A split of a packed cache; ``make_item(row, train)`` builds one sample dict from the memmaps."""

    def __init__(self, cache: PackedCache, split: str, make_item: Callable[[int, bool], dict[str, torch.Tensor]]):
        self.cache = cache
        self.split = split
        self.rows = cache.rows(split)
        self.make_item = make_item
        self.train = split == "train"

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = int(self.rows[i])
        item = self.make_item(row, self.train)
        item["label"] = torch.tensor(int(self.cache.labels[row]))
        item["index"] = torch.tensor(row)
        return item


def check_root(name: str, root: str, hint: str) -> Path:
    """The raw release directory, or DatasetNotFoundError saying what to download and where to put it."""
    path = Path(os.path.expanduser(root)) if root else None
    if path is None or not path.is_dir():
        where = f" (looked in {str(path)!r})" if path else " (data.root / --root is empty)"
        raise DatasetNotFoundError(f"raw release of {name!r} not found{where}. {hint}")
    return path


# -- the datasets read from a cache ------------------------------------------------------------------------


@dataclass
class PackedConfig(DatasetConfig):
    """``data.*`` keys of every packed dataset; subclasses add their own."""

    # The raw release (only read by ``prepare``) and the packed cache that training reads.
    root: str = field(default="", metadata=NOT_IDENTITY)
    cache: str = field(default="", metadata=NOT_IDENTITY)


class PackedDataset(MultimodalDataset):
    """Base of the datasets trained from a packed cache: finds and opens the cache (``data.cache``, else
    :func:`default_cache_dir`) and serves its splits through :meth:`make_item`."""

    Config: ClassVar[type] = PackedConfig
    # What to download and where to put it; shown when neither the raw release nor a cache is there.
    download_hint: ClassVar[str] = ""

    def cache_dir(self) -> Path:
        return Path(os.path.expanduser(self.cfg.cache)) if self.cfg.cache else default_cache_dir(self.name)

    def _cache(self) -> PackedCache:
        if getattr(self, "_packed", None) is None:
            where = self.cache_dir()
            hint = f"Prepare it once: python -m datasets prepare {self.name} --root RAW --out {where}."
            if not self.cfg.root and not where.exists():
                hint = f"{self.download_hint} {hint}"
            self._packed = PackedCache(where, self.name, hint)
        return self._packed

    def make_item(self, row: int, train: bool) -> dict[str, torch.Tensor]:
        """The inputs of cache row ``row`` (label and index are added by :class:`CachedSplit`)."""
        raise NotImplementedError

    def split(self, name: str) -> CachedSplit:
        return CachedSplit(self._cache(), name, self.make_item)
