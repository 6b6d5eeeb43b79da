"""Shared machinery of the downloaded datasets: the packed cache, audio features, frame transforms.

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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from benchmark.data import DatasetNotFoundError

CACHE_VERSION = 1
PENDING, DONE, BAD = 0, 1, 2
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
        _atomic_write(mpath, json.dumps(manifest))

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
        _atomic_write(bpath, json.dumps(bad, indent=1))

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
    _atomic_write(out / "splits.json", json.dumps(make_splits(ok, val_fraction, val_seed)))
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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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


# -- audio -------------------------------------------------------------------------------------------------


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Mono float32 waveform in [-1, 1] and its sample rate, with scipy (PCM 8/16/24/32-bit or float wav)."""
    from scipy.io import wavfile

    sr, x = wavfile.read(path)
    if x.dtype == np.uint8:
        x = (x.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    else:
        x = x.astype(np.float32)
    if x.ndim == 2:  # librosa.load(mono=True) averages the channels
        x = x.mean(axis=1)
    return x, int(sr)


def resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    """Resample with soxr's "HQ" filter: exactly what ``librosa.load(path, sr=target)`` does by default."""
    if sr == target:
        return x.astype(np.float32)
    import soxr

    return soxr.resample(x.astype(np.float32), sr, target, quality="HQ").astype(np.float32)


def load_audio(path: str | os.PathLike, sr: int) -> np.ndarray:
    x, native = read_wav(path)
    return resample(x, native, sr)


def tile_to(x: np.ndarray, length: int, repeats: int | None = None) -> np.ndarray:
    """The official loop-padding: ``np.tile(x, repeats)[:length]``; ``repeats=None`` tiles until >= length."""
    if len(x) == 0:
        raise ValueError("empty waveform")
    if repeats is None:
        repeats = int(math.ceil(length / len(x)))
    y = np.tile(x, repeats)[:length]
    if len(y) < length:
        raise ValueError(f"waveform of {len(x)} samples tiled x{repeats} is shorter than {length}")
    return y


def log_stft(x: np.ndarray, n_fft: int = 512, hop: int = 353, pad_mode: str = "constant") -> np.ndarray:
    """``log(|librosa.stft(x, n_fft, hop_length=hop)| + 1e-7)``: periodic Hann window, centred frames.

    ``pad_mode`` is librosa's: "constant" (zeros, the default since librosa 0.10) or "reflect" (librosa < 0.10,
    which the 2022 official code may have run with). Returns (1 + n_fft // 2, 1 + len(x) // hop) float32.
    """
    x = np.asarray(x, dtype=np.float64)
    pad = n_fft // 2
    xp = np.pad(x, pad, mode=pad_mode)
    n_frames = 1 + (len(xp) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    spec = np.fft.rfft(xp[idx] * window, axis=1)  # (frames, bins)
    return np.log(np.abs(spec).T + 1e-7).astype(np.float32)


# -- frames ------------------------------------------------------------------------------------------------


PIL_RESAMPLE = {"bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling.BILINEAR / BICUBIC


def load_image(path: str | os.PathLike, size: int, resample: str = "bilinear") -> tuple[np.ndarray, tuple[int, int]]:
    """An image file as uint8 (size, size, 3) and its original (width, height).

    Resized like torchvision's ``Resize((size, size))`` on a PIL image (PIL ``resize``, aspect not kept) with
    ``resample`` "bilinear" (the audio-visual loaders' default) or "bicubic" (IGM's image-text test transform).
    """
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        original = im.size
        if im.size != (size, size):
            im = im.resize((size, size), PIL_RESAMPLE[resample])
        return np.asarray(im, dtype=np.uint8), original


def read_image(path: str | os.PathLike, size: int, resample: str = "bilinear") -> np.ndarray:
    """:func:`load_image` without the original size."""
    return load_image(path, size, resample)[0]


def random_resized_crop_box(
    width: int, height: int, scale: Sequence[float], ratio: Sequence[float] = (3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params`` for an image of (width, height): (top, left, h, w).

    Same draws from torch's global generator as the official loaders make on the original image, so one seed
    gives one box whatever size the cached copy has.
    """
    from torchvision.transforms import RandomResizedCrop

    shape_only = torch.empty(1, 1, 1).expand(1, height, width)  # get_params reads only the shape
    return tuple(RandomResizedCrop.get_params(shape_only, list(scale), list(ratio)))


def resized_crop(
    img: np.ndarray, box: Sequence[int], source_size: Sequence[int] | None, size: int, resample: str
) -> np.ndarray:
    """Crop ``box`` = (top, left, h, w), given on the original image of ``source_size`` = (W, H), out of the
    stored copy ``img`` (uint8 HxWx3) and resize it to (size, size) with PIL.

    When the copy has the original's size this is exactly torchvision's ``resized_crop`` on a PIL image (crop,
    then resize). Otherwise the box is mapped onto the copy (fractional coordinates) and PIL resamples that
    region: the same part of the picture, resampled from the copy instead of the original.
    """
    from PIL import Image

    top, left, h, w = (int(v) for v in box)
    pil = Image.fromarray(np.ascontiguousarray(img))
    width, height = (int(source_size[0]), int(source_size[1])) if source_size is not None else pil.size
    if (width, height) == pil.size:
        out = pil.crop((left, top, left + w, top + h)).resize((size, size), PIL_RESAMPLE[resample])
    else:
        sx, sy = pil.size[0] / width, pil.size[1] / height
        region = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
        out = pil.resize((size, size), PIL_RESAMPLE[resample], box=region)
    return np.asarray(out, dtype=np.uint8)


def normalize(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W): ``ToTensor`` (x / 255) then ``Normalize(mean, std)``."""
    x = torch.from_numpy(np.array(frames)).movedim(-1, -3).float().div_(255.0)
    shape = (3, 1, 1)
    return (x - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)


def segment_indices(n: int, k: int, train: bool, generator: torch.Generator | None = None) -> list[int]:
    """``k`` frame indices out of ``n``: one per equal segment, random in it for training, its centre otherwise.

    With fewer frames than segments the indices repeat (every clip yields exactly ``k`` frames).
    """
    if n <= 0:
        raise ValueError("clip without frames")
    out = []
    for j in range(k):
        lo = (j * n) // k
        hi = max(((j + 1) * n) // k, lo + 1)
        if train:
            pick = lo + int(torch.randint(hi - lo, (1,), generator=generator))
        else:
            pick = (lo + hi - 1) // 2
        out.append(min(pick, n - 1))
    return out


def frames_to_tensor(
    frames: np.ndarray,
    size: int,
    train: bool,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale: tuple[float, float] = (0.08, 1.0),
    flip: bool = True,
    source_size: Sequence[int] | None = None,
    trace: list[Any] | None = None,
) -> torch.Tensor:
    """uint8 (T, H, W, 3) frames -> normalised float (3, T, size, size).

    Train: per frame, as the official loaders, ``RandomResizedCrop(size, scale)`` (bilinear) then a horizontal
    flip with probability 0.5; the box is drawn on the original frame of ``source_size`` = (W, H) (the
    stored frame when unknown) and cut from the stored copy (:func:`resized_crop`). Otherwise a plain resize to
    (size, size) when the stored frame has another size. Draws use torch's global generator (seeded and
    checkpointed by the trainer), in the official order: crop, flip, next frame. ``trace`` receives each
    training frame's (box, flipped).
    """
    from torchvision.transforms.v2 import functional as TF

    frames = np.asarray(frames)
    if source_size is None:
        source_size = (frames.shape[2], frames.shape[1])
    width, height = int(source_size[0]), int(source_size[1])
    outs = []
    for f in frames:
        if train:
            box = random_resized_crop_box(width, height, scale)
            f = resized_crop(f, box, (width, height), size, "bilinear")
            flipped = bool(flip and torch.rand(1).item() < 0.5)
            if flipped:
                f = f[:, ::-1]
            if trace is not None:
                trace.append((box, flipped))
        elif f.shape[0] != size or f.shape[1] != size:
            t = TF.resize(torch.from_numpy(np.array(f)).permute(2, 0, 1), [size, size], antialias=True)
            f = t.permute(1, 2, 0).numpy()
        outs.append(np.ascontiguousarray(f))
    return normalize(np.stack(outs), mean, std).permute(1, 0, 2, 3).contiguous()


def check_root(name: str, root: str, hint: str) -> Path:
    """The raw release directory, or DatasetNotFoundError saying what to download and where to put it."""
    path = Path(os.path.expanduser(root)) if root else None
    if path is None or not path.is_dir():
        where = f" (looked in {str(path)!r})" if path else " (data.root / --root is empty)"
        raise DatasetNotFoundError(f"raw release of {name!r} not found{where}. {hint}")
    return path


def timed_samples_per_second(dataset: Dataset, limit: int) -> float:
    """Samples per second of ``dataset[i]`` over the first ``limit`` items (single process)."""
    n = min(limit, len(dataset))
    t0 = time.perf_counter()
    for i in range(n):
        dataset[i]
    return n / max(time.perf_counter() - t0, 1e-9)


def read_video(
    path: str | os.PathLike, size: int | None = None, every_seconds: float = 0.0
) -> tuple[np.ndarray, float]:
    """Decode a video with PyAV: uint8 (N, H, W, 3) frames (resized to size x size if given) and the frame rate.

    ``every_seconds > 0`` keeps the first frame of every period, like the official CREMA-D extraction
    (``frame_interval = int(fps / 1)``, frame ``i`` kept when ``i % interval == 0``).
    """
    import av

    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 30)
        interval = max(int(fps * every_seconds), 1) if every_seconds > 0 else 1
        for i, frame in enumerate(container.decode(stream)):
            if i % interval:
                continue
            if size is not None:
                frame = frame.reformat(width=size, height=size)
            frames.append(frame.to_ndarray(format="rgb24"))
    if not frames:
        raise ValueError("no decodable video frame")
    return np.stack(frames), fps


def video_frame_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of a video's frames, from the container's metadata."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return int(stream.width), int(stream.height)
