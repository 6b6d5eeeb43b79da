"""Speed figures (not tests): every method's training-step time as a ratio to ``joint``, per-epoch extras, loaders.

``python run_all.py --bench`` (av_digits) or ``--bench --shapes crema_d,kinetics_sounds,twitter2015`` (the papers'
model and input sizes on synthetic tensors) writes ``reports/perf.csv``; its columns are documented in
``docs/performance.md``. The design keeps the ratios stable on a shared machine:

* every method is built once (with the dataset's real config and the method's own defaults for it, at one batch
  size for all) and takes one untimed warm-up step;
* then rounds: in each round every method (in an order shuffled per round) times ``steps`` steps back to back on
  the same pre-drawn batch; the ratio to joint is taken *within* the round, so a slow drift of the machine's load
  cancels; the table gives the median over rounds and the spread (min / max) of the per-round ratios;
* the per-epoch work outside the steps (MIE's T construction per stage, PMR's prototype pass, SMV's valuation,
  G-Blending's probes, MSES's monitored pass) is timed once through the method's own hooks on a synthetic
  training split of ``extra_batches`` batches and given as a fraction of that many steps of the method.

The paper shapes need no dataset on disk: :class:`SyntheticDataset` carries the registered dataset's real
:class:`DatasetInfo` and tensors of its real shapes (random values, the same batches for every method), and
:func:`benchmark.trainer.build_run` takes it in place of the registered dataset, so each method is built exactly
as for a run on that dataset.
"""

from __future__ import annotations

import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset

from benchmark.config import build_config
from benchmark.data import Batch, DatasetInfo, MultimodalDataset, to_device
from benchmark.registry import DATASETS, METHODS, table1_methods
from benchmark.results import atomic_write_text

# -- shapes ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A dataset's model and input sizes for the step benchmark.

    ``inputs``: per modality, the shape of one sample (float tensors), or ``("tokens", length)`` for token ids.
    ``sizes``: samples of the real train / val / test splits (to scale the synthetic splits' proportions).
    ``batch``: the papers' training batch, used for every method on a GPU; ``cpu_batch`` on a CPU, where the
    papers' batch at 224x224 takes minutes per step.
    """

    dataset: str
    batch: int
    cpu_batch: int
    inputs: dict[str, tuple]
    sizes: tuple[int, int, int]
    overrides: dict[str, Any] = field(default_factory=dict)
    note: str = ""


SHAPES: dict[str, Shape] = {
    # CREMA-D (OGM-GE / IGM): log-spectrogram 1x257x188, one 224x224 frame per clip, ResNet18 width 64; the
    # OGM-GE split 6,698 train (our 10 % validation: 6,028 / 670) / 744 test.
    "crema_d": Shape(
        dataset="crema_d",
        batch=64,
        cpu_batch=2,
        inputs={"audio": (1, 257, 188), "visual": (3, 1, 224, 224)},
        sizes=(6028, 670, 744),
        overrides={"model.resnet_width": 64, "data.frames": 1},
    ),
    # Kinetics-Sounds (IGM): 10-s spectrogram 1x257x1003, 3 frames per clip; ~15k train / 1.9k test.
    "kinetics_sounds": Shape(
        dataset="kinetics_sounds",
        batch=64,
        cpu_batch=2,
        inputs={"audio": (1, 257, 1003), "visual": (3, 3, 224, 224)},
        sizes=(13500, 1500, 1900),
        overrides={"model.resnet_width": 64, "data.frames": 3},
    ),
    # Twitter-2015 (IGM): BERT-base on <= 50 cleaned words (64 token ids here) + ResNet50 on a 224x224 image,
    # batch 12; both with random weights (bert_scratch, resnet50_scratch): the step costs the same.
    "twitter2015": Shape(
        dataset="twitter2015",
        batch=12,
        cpu_batch=2,
        inputs={"text": ("tokens", 64), "image": (3, 224, 224)},
        sizes=(3179, 1122, 1037),
        overrides={"model.backbones": {"text": "bert_scratch", "image": "resnet50_scratch"}},
        note="random-init BERT-base and ResNet50 (same architectures as the pretrained towers)",
    ),
}
EMBEDDED = "av_digits"  # the embedded dataset: its real loader, no synthetic tensors
VOCAB = 30522  # bert-base-uncased


# -- synthetic data at a dataset's shapes --------------------------------------------------------------------


class SyntheticSplit(Dataset):
    """``length`` samples drawn from a pool of random tensors (sample ``i`` is pool entry ``i % pool``), labels
    ``i % num_classes``; batches come whole from ``__getitems__``. ``length`` may be changed after creation."""

    def __init__(self, inputs: dict[str, tuple], length: int, num_classes: int, pool: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.pool: dict[str, torch.Tensor] = {}
        for m, spec in inputs.items():
            if spec and spec[0] == "tokens":
                ids = torch.randint(1000, VOCAB, (pool, int(spec[1])), generator=gen)
                ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP], no padding
                self.pool[m] = ids
            else:
                self.pool[m] = torch.randn((pool, *spec), generator=gen)
        self.length = length
        self.num_classes = num_classes

    def __len__(self) -> int:
        return self.length

    def __getitems__(self, indices: list[int]) -> Batch:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        n = next(iter(self.pool.values())).shape[0]
        out = {m: t.index_select(0, idx % n) for m, t in self.pool.items()}
        out["label"] = idx % self.num_classes
        out["index"] = idx
        return out

    def __getitem__(self, i: int) -> Batch:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


class SyntheticDataset(MultimodalDataset):
    """Random tensors at ``shape``'s sizes with the registered dataset's real :class:`DatasetInfo`."""

    def __init__(self, cfg: Any, shape: Shape, train_samples: int, batch: int, seed: int = 0) -> None:
        super().__init__(cfg)
        self.name = shape.dataset
        self._info = DATASETS.get(shape.dataset)(cfg).info  # info needs no files
        train, val, test = shape.sizes
        scale = train_samples / train
        lengths = {"train": train_samples, "val": max(2, round(val * scale)), "test": max(2, round(test * scale))}
        pool = max(2, min(2 * batch, train_samples))
        self._splits = {
            s: SyntheticSplit(shape.inputs, n, self._info.num_classes, pool=min(pool, n), seed=seed + k)
            for k, (s, n) in enumerate(lengths.items())
        }

    @property
    def info(self) -> DatasetInfo:
        return self._info

    def split(self, name: str) -> SyntheticSplit:
        return self._splits[name]


# -- per-epoch extras ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Extra:
    """Work a method does outside its steps: ``run(method)`` triggers it once through the method's own hooks;
    it serves ``per(method)`` epochs (1: every epoch). ``overrides`` make it affordable to time (same cost per
    epoch). Method-specific knowledge of the benchmark only; a ``Method`` hook could carry it later."""

    what: str
    run: Callable[[Any], Any]
    per: Callable[[Any], float] = lambda m: 1.0
    overrides: dict[str, Any] = field(default_factory=dict)
    # Seconds of the last run that do not grow with the training set (read from the method's artifacts).
    fixed_s: Callable[[Any], float] = lambda m: 0.0


EXTRAS: dict[str, Extra] = {
    "mie": Extra(
        "T construction at a stage start (moment pass over the training set + eigendecomposition); once per stage",
        run=lambda m: m.on_epoch_start(m.stages[1].start),
        fixed_s=lambda m: float(m.artifacts()["t_build"][-1]["decomposition_s"]),
    ),
    "pmr": Extra(
        "prototype pass (class means over proto_fraction of the training batches)", run=lambda m: m.on_epoch_end(0)
    ),
    "smv": Extra(
        "Shapley valuation of the training set (every resampling epoch)",
        run=lambda m: m.train_loader(max(m.cfg.warmup - 1, 0)),
    ),
    # One probe window of super_epoch epochs per head every super_epoch epochs: the same probe cost per epoch at
    # any super_epoch, timed with super_epoch = 1 (the loss passes, once per super-epoch, are counted every epoch).
    "gblending": Extra(
        "blend-weight estimation: 3 probe trainings (one per head) + loss passes, per epoch",
        run=lambda m: m.on_epoch_start(0),
        overrides={"method.super_epoch": 1, "method.probe_steps": 0, "method.loss_batches": 0},
    ),
    "mses": Extra("monitored-loss pass over validation + best-epoch snapshot", run=lambda m: m.on_epoch_end(0)),
}


# -- building and timing ------------------------------------------------------------------------------------


@dataclass
class Entry:
    label: str
    method: str
    overrides: dict[str, Any]
    instance: Any = None
    error: str = ""
    ms: list[float] = field(default_factory=list)  # per round


def entries_for(methods: list[str], info: DatasetInfo) -> list[Entry]:
    """One entry per run a method contributes (``unimodal``: one per modality), joint first."""
    out = []
    for name in methods:
        cls = METHODS.get(name)
        for ov in cls.expand(info):
            cfg = cls.Config()
            for k, v in ov.items():
                setattr(cfg, k.split(".", 1)[1], v)
            out.append(Entry(label=cls.label(cfg), method=name, overrides=dict(ov)))
    return out


def default_methods(shape: str) -> list[str]:
    """Every registered method on av_digits; the main suite's methods (Table 1) at the papers' shapes."""
    names = METHODS.names() if shape == EMBEDDED else list(table1_methods())  # the main suite's methods
    return ["joint"] + [n for n in names if n != "joint"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(method: Any, batch: Batch, steps: int, start: int = 0) -> float:
    """Mean seconds of ``steps`` consecutive ``training_step`` calls on ``batch`` (synchronised on CUDA)."""
    _sync(method.device)
    t0 = time.perf_counter()
    for i in range(steps):
        method.training_step(batch, start + i)
    _sync(method.device)
    return (time.perf_counter() - t0) / steps


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


@dataclass
class BenchSetup:
    shape: str
    dataset: str
    batch: int
    overrides: dict[str, Any]
    synthetic: Shape | None
    train_samples: int


def _build(entry: Entry, setup: BenchSetup, extra_overrides: dict[str, Any]) -> Any:
    from benchmark.trainer import build_run

    cls = METHODS.get(entry.method)
    ov = {
        "train.checkpoint": False,
        "train.save_model": False,
        **(setup.synthetic.overrides if setup.synthetic else {}),
        **cls.bench_overrides,
        **extra_overrides,
        **entry.overrides,
        **setup.overrides,
        "train.batch_size": setup.batch,
    }
    cfg = build_config(entry.method, setup.dataset, 0, ov)
    dataset = None
    if setup.synthetic is not None:
        dataset = SyntheticDataset(cfg.data_cfg, setup.synthetic, setup.train_samples, setup.batch)
    run = build_run(cfg, dataset=dataset)
    m = run.method
    m.model.train()
    m.on_epoch_start(0)
    return m


def _batches(setup: BenchSetup, n: int) -> tuple[list[Batch], torch.device]:
    from benchmark.trainer import build_run

    ov = {
        "train.checkpoint": False,
        **(setup.synthetic.overrides if setup.synthetic else {}),
        **setup.overrides,
        "train.batch_size": setup.batch,
    }
    cfg = build_config("joint", setup.dataset, 0, ov)
    dataset = None
    if setup.synthetic is not None:
        size = max(n * setup.batch, setup.train_samples)
        dataset = SyntheticDataset(cfg.data_cfg, setup.synthetic, size, setup.batch)
    probe = build_run(cfg, dataset=dataset)
    loader = probe.ctx.loader("train", epoch=0)
    batches = [b for _, b in zip(range(n), loader)]
    device = probe.ctx.device
    return [to_device(b, device) for b in batches], device


def run_rounds(
    entries: list[Entry],
    batches: list[Batch],
    rounds: int,
    steps: int,
    budget_s: float,
    min_rounds: int = 3,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> int:
    """Time every built entry ``steps`` steps per round, order shuffled per round; returns the rounds done.

    Stops after ``rounds`` rounds, or once ``budget_s`` seconds are spent and ``min_rounds`` are done.
    """
    rng = random.Random(seed)
    live = [e for e in entries if e.instance is not None]
    t0 = time.perf_counter()
    done = 0
    for r in range(rounds):
        order = live[:]
        rng.shuffle(order)
        batch = batches[r % len(batches)]
        for e in order:
            if e.error:
                continue
            try:
                e.ms.append(1000.0 * time_steps(e.instance, batch, steps, start=1 + r * steps))
            except Exception as exc:  # a method that breaks mid-bench is reported; the others go on
                e.error = f"{type(exc).__name__}: {exc}"
        done = r + 1
        spent = time.perf_counter() - t0
        log(f"  round {done}/{rounds}: {spent:.0f} s")
        if done >= min_rounds and spent >= budget_s:
            break
    return done


def ratio_spread(ms: list[float], joint_ms: list[float]) -> tuple[float, float, float]:
    """(min, median, max) over rounds of the per-round ratio ``ms[r] / joint_ms[r]``."""
    ratios = [a / b for a, b in zip(ms, joint_ms) if b > 0 and math.isfinite(a)]
    if not ratios:
        return (math.nan, math.nan, math.nan)
    return (min(ratios), statistics.median(ratios), max(ratios))


def measure_extra(
    entry: Entry, extra: Extra, batch: int, full_train: int | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Time ``extra`` once on the entry's built method, as a fraction of the method's own epoch on the same data
    (``extra_fraction``) and projected to a training split of ``full_train`` samples (``extra_fraction_full``:
    the part that grows with the data scaled, the fixed part kept)."""
    m = entry.instance
    n = len(m.ctx.splits["train"])
    _sync(m.device)
    t0 = time.perf_counter()
    extra.run(m)
    _sync(m.device)
    secs = time.perf_counter() - t0
    fixed = min(max(float(extra.fixed_s(m)), 0.0), secs)
    step_s = statistics.median(entry.ms) / 1000.0 if entry.ms else math.nan
    per = float(extra.per(m))

    def fraction(samples: int, extra_s: float) -> float:
        epoch_s = per * math.ceil(samples / batch) * step_s
        return extra_s / epoch_s if epoch_s > 0 else math.nan

    full = full_train or n
    full_s = fixed + (secs - fixed) * full / n
    row = {
        "extra_s": secs,
        "extra_fixed_s": fixed,
        "extra_samples": n,
        "extra_fraction": fraction(n, secs),
        "extra_fraction_full": fraction(full, full_s),
        "extra_what": extra.what,
    }
    log(
        f"  {entry.label}: {secs:.2f} s on {n} samples ({fixed:.2f} s fixed) = {row['extra_fraction']:.3f} of an "
        f"epoch; {row['extra_fraction_full']:.3f} on {full} samples: {extra.what}"
    )
    return row


# -- the benchmark ------------------------------------------------------------------------------------------


def bench_shape(
    shape: str,
    *,
    methods: list[str] | None = None,
    rounds: int = 15,
    steps: int | None = None,
    batch: int | None = None,
    budget_s: float = 900.0,
    extra_batches: int = 4,
    extras: bool = True,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """The step and extras rows of one shape (see the module docstring)."""
    overrides = dict(overrides or {})
    synthetic = SHAPES.get(shape)
    if synthetic is None and shape != EMBEDDED:
        raise ValueError(f"unknown bench shape {shape!r}; choose from {EMBEDDED}, {', '.join(SHAPES)}")
    dataset = synthetic.dataset if synthetic else EMBEDDED
    from benchmark.trainer import resolve_device

    device = resolve_device(str(overrides.get("train.device", "auto")))
    cuda = device.type == "cuda"
    if batch is None:
        batch = 64 if synthetic is None else (synthetic.batch if cuda else synthetic.cpu_batch)
    if steps is None:
        steps = 5 if cuda else (2 if synthetic is None else 1)
    info = DATASETS.get(dataset)(build_config("joint", dataset, 0, {}).data_cfg).info
    # every class in the synthetic training split (PMR's prototypes need one sample of each)
    train_samples = batch * max(extra_batches, math.ceil(info.num_classes / batch))
    setup = BenchSetup(shape, dataset, batch, overrides, synthetic, train_samples=train_samples)
    names = [METHODS.resolve(m) for m in (methods or default_methods(shape))]
    if "joint" not in names:
        names.insert(0, "joint")
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    batches, device = _batches(setup, 2)
    entries = entries_for(names, info)
    log(f"[bench {shape}] {len(entries)} runs at batch {batch} on {device}; building, one warm-up step each")
    for e in entries:
        extra = EXTRAS.get(e.method)
        try:
            e.instance = _build(e, setup, extra.overrides if extra else {})
            time_steps(e.instance, batches[0], 1)  # warm-up (allocator, cuDNN autotuning, lazy state)
        except Exception as exc:  # a broken method is reported, the others are still measured
            e.error = f"{type(exc).__name__}: {exc}"
            e.instance = None
            log(f"  {e.label}: {e.error}")
    spent = time.perf_counter() - t_start
    joint = next(e for e in entries if e.label == "joint")
    if joint.instance is None:
        raise RuntimeError(f"joint failed to build at shape {shape!r}: {joint.error}")
    # the budget covers the build and the extras too (about one more round): leave them their share
    done = run_rounds(entries, batches, rounds, steps, max(0.0, 0.8 * budget_s - 2 * spent), seed=seed, log=log)
    rows: list[dict[str, Any]] = []
    for e in entries:
        lo, mid, hi = ratio_spread(e.ms, joint.ms[: len(e.ms)]) if e.ms else (math.nan,) * 3
        rows.append(
            {
                "kind": "step",
                "name": e.label,
                "ms_median": statistics.median(e.ms) if e.ms else math.nan,
                "ms_min": min(e.ms) if e.ms else math.nan,
                "ms_max": max(e.ms) if e.ms else math.nan,
                "ratio_median": mid,
                "ratio_min": lo,
                "ratio_max": hi,
                "rounds": len(e.ms),
                "error": e.error,
            }
        )
    if extras:
        log(f"[bench {shape}] per-epoch extras")
        for e in entries:
            extra = EXTRAS.get(e.method)
            if extra is None or e.instance is None or e.error:
                continue
            row: dict[str, Any] = {"kind": "extra", "name": e.label}
            try:
                full = synthetic.sizes[0] if synthetic else None
                row.update(measure_extra(e, extra, batch, full, log))
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
    for e in entries:
        e.instance = None
    df = pd.DataFrame(rows)
    df.insert(0, "shape", shape)
    df["batch"] = batch
    df["steps_per_round"] = steps
    df["device"] = str(device) + (f" ({torch.cuda.get_device_name()})" if cuda else "")
    df["threads"] = torch.get_num_threads()
    df["loadavg_start"] = load_start
    df["loadavg_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    df["host"] = platform.node()
    df["torch"] = torch.__version__
    df["note"] = synthetic.note if synthetic else ""
    log(f"[bench {shape}] {done} rounds, {time.perf_counter() - t_start:.0f} s")
    return df


def loader_rows(shape: str, overrides: dict[str, Any], cache_vs_raw: bool, train_rate: bool) -> list[dict]:
    """Loader throughput: the embedded dataset's training loader; the CREMA-D fixture's packed cache against the
    raw files (evaluation transforms) and its training items (random crops and flips) per worker."""
    rows: list[dict] = []
    if shape == EMBEDDED:
        rows.append({"kind": "loader", "name": EMBEDDED, "samples_per_s": loader_throughput(EMBEDDED, overrides)})
    if cache_vs_raw or train_rate:
        from benchmark.bench_data import bench_fixture

        cmp = bench_fixture(train=train_rate)
        if cache_vs_raw:
            rows.append({"kind": "loader_cache", "name": "crema_d fixture", "samples_per_s": cmp["cached_sps"]})
            rows.append({"kind": "loader_raw", "name": "crema_d fixture", "samples_per_s": cmp["raw_sps"]})
        if train_rate:
            rows.append(
                {
                    "kind": "loader_train",
                    "name": "crema_d fixture, train transforms, one worker",
                    "samples_per_s": cmp["train_sps"],
                    "workers_for_3000": cmp["workers_for_3000"],
                }
            )
    return rows


def loader_throughput(dataset: str, overrides: dict[str, Any]) -> float:
    """Samples per second of one pass over the training loader (batches only, no model)."""
    from benchmark.trainer import build_run

    setup = build_run(build_config("joint", dataset, 0, {"train.checkpoint": False, **overrides}))
    loader = setup.ctx.loader("train", epoch=0)
    t0 = time.perf_counter()
    n = sum(len(b["label"]) for b in loader)
    return n / (time.perf_counter() - t0)


def print_table(df: pd.DataFrame, log: Callable[[str], None] = print) -> None:
    for shape, part in df.groupby("shape", sort=False):
        steps = part[part["kind"] == "step"]
        if not steps.empty:
            first = steps.iloc[0]
            log(f"\n{shape}: batch {first['batch']}, {first['device']}, load {first['loadavg_start']:.1f}")
            log(f"{'method':18s} {'ms/step':>9s}  {'ratio to joint (min / median / max)':>36s}")
            for _, r in steps.sort_values("ratio_median").iterrows():
                if isinstance(r.get("error"), str) and r["error"]:
                    log(f"{r['name']:18s} {'-':>9s}  error: {r['error']}")
                    continue
                log(
                    f"{r['name']:18s} {r['ms_median']:9.1f}  "
                    f"{r['ratio_min']:10.2f} / {r['ratio_median']:5.2f} / {r['ratio_max']:5.2f}"
                    f"  ({int(r['rounds'])} rounds)"
                )
        ext = part[part["kind"] == "extra"]
        for _, r in ext.iterrows():
            if isinstance(r.get("error"), str) and r["error"]:
                log(f"extra {r['name']}: error: {r['error']}")
            else:
                log(
                    f"extra {r['name']:12s} {r['extra_fraction']:6.3f} of an epoch on {int(r['extra_samples'])} "
                    f"samples, {r['extra_fraction_full']:6.3f} on the full split: {r['extra_what']}"
                )
        for _, r in part[part["kind"].astype(str).str.startswith("loader")].iterrows():
            log(f"{r['kind']:13s} {r['name']}: {r['samples_per_s']:.1f} samples/s")


def run_bench(
    out_dir: Path,
    steps: int | None = None,
    methods: list[str] | None = None,
    dataset: str = EMBEDDED,
    overrides: dict[str, Any] | None = None,
    cache_vs_raw: bool = True,
    *,
    shapes: list[str] | None = None,
    rounds: int = 15,
    batch: int | None = None,
    budget_s: float = 900.0,
    extra_batches: int = 4,
    extras: bool = True,
    train_loader_rate: bool = True,
    csv_name: str = "perf.csv",
    log: Callable[[str], None] = print,
) -> Path:
    """Bench each of ``shapes`` (default: ``[dataset]``) and merge the rows into ``out_dir/csv_name``: rows of a
    shape measured now replace that shape's earlier rows; other shapes' rows stay."""
    overrides = dict(overrides or {})
    frames = []
    for i, shape in enumerate(shapes or [dataset]):
        df = bench_shape(
            shape,
            methods=methods,
            rounds=rounds,
            steps=steps,
            batch=batch,
            budget_s=budget_s,
            extra_batches=extra_batches,
            extras=extras,
            overrides=overrides,
            log=log,
        )
        loaders = loader_rows(shape, overrides, cache_vs_raw and i == 0, train_loader_rate and i == 0)
        if loaders:
            extra = pd.DataFrame(loaders)
            extra.insert(0, "shape", shape)
            for col in ("device", "host", "torch", "loadavg_start", "loadavg_end"):
                extra[col] = df[col].iloc[0]
            df = pd.concat([df, extra], ignore_index=True)
        frames.append(df)
    new = pd.concat(frames, ignore_index=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / csv_name
    if path.is_file():
        old = pd.read_csv(path)
        if "shape" in old.columns:
            old = old[~old["shape"].isin(set(new["shape"]))]
            new = pd.concat([old, new], ignore_index=True)
    atomic_write_text(path, new.to_csv(index=False))
    print_table(new[new["shape"].isin([s for s in (shapes or [dataset])])], log)
    log(f"\nwritten: {path}")
    return path
