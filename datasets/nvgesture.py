"""NVGesture (Molchanov et al. 2016): 1,532 dynamic hand gestures, 25 classes; RGB, depth and optical flow.

Follows IGM's ``datasets/nvGesture.py`` (mie_igm.md 10; data preparation of Wu et al. 2022, greedy MML):

* RGB (``sk_color.avi``) and depth (``sk_depth.avi``) read between the split file's start and end frames,
  resized to 256x256 and brought to an 80-frame window (evenly resampled when the gesture is not 80 frames);
* optical flow precomputed as ``flow_data/{train,test}/<line index>.npy`` (2 channels; layout (T, H, W, 2),
  (2, T, H, W) or (T, 2, H, W) accepted), brought to the same window and size;
* train: 64 consecutive frames from a random start in [0, 16] and one random 224 crop shared by the three
  modalities (flip probability 0, as in the code); test: all 80 frames, centre 224 crop;
* RGB normalised with ImageNet statistics, depth scaled to [0, 1] without normalisation, flow as stored.

Official split files: ``nvgesture_{train,test}_correct_cvpr2016_v2.lst`` (1,050 / 482); validation: 10 % of
train, stratified, seed 0 (the official code has none and selects on test).

Raw layout under ``data.root``::

    nvgesture_train_correct_cvpr2016_v2.lst, nvgesture_test_correct_cvpr2016_v2.lst
    Video_data/class_XX/subjectYY_rZ/{sk_color.avi, sk_depth.avi}
    flow_data/{train,test}/<index>.npy

The cache is large at the default size (uint8 RGB 80x256x256x3 ~ 15.7 MB per gesture, depth 5.2 MB, float16
flow 21 MB: ~64 GB in all); ``--option store_size=128`` divides it by four.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.config import NOT_IDENTITY
from benchmark.data import DatasetConfig, DatasetInfo, DatasetNotFoundError, MultimodalDataset
from benchmark.registry import register_dataset
from datasets._common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CachedSplit,
    FieldSpec,
    PackedCache,
    Sample,
    check_root,
    default_cache_dir,
    read_video,
    write_packed,
)

SPLIT_FILES = {
    "train": "nvgesture_train_correct_cvpr2016_v2.lst",
    "test": "nvgesture_test_correct_cvpr2016_v2.lst",
}
HINT = (
    "Request NVGesture from NVIDIA (https://research.nvidia.com/publication/2016-06_online-detection-and-"
    "classification-dynamic-hand-gestures-recurrent-3d-convolutional), unpack nvGesture_v1 (Video_data/ and the "
    "two nvgesture_*_correct_cvpr2016_v2.lst files) into RAW and put the precomputed optical flow in "
    "RAW/flow_data/{train,test}/<index>.npy."
)


@dataclass
class NVGestureConfig(DatasetConfig):
    root: str = field(default="", metadata=NOT_IDENTITY)
    cache: str = field(default="", metadata=NOT_IDENTITY)
    clip_frames: int = 64  # consecutive frames per training clip (test: the whole window)
    crop: int = 224


def _resample_time(x: np.ndarray, n: int) -> np.ndarray:
    idx = np.linspace(0, len(x) - 1, n).round().astype(int) if len(x) != n else np.arange(n)
    return x[idx]


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, C) -> (T, size, size, C), bilinear, dtype kept."""
    if x.shape[1] == size and x.shape[2] == size:
        return x
    t = torch.from_numpy(np.asarray(x, dtype=np.float32)).permute(0, 3, 1, 2)
    y = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    return np.clip(y.round(), 0, 255).astype(np.uint8) if x.dtype == np.uint8 else y.astype(x.dtype)


@register_dataset
class NVGesture(MultimodalDataset):
    """NVGesture: RGB, depth and optical-flow clips of 25 hand gestures (I3D per modality)."""

    name = "nvgesture"
    Config = NVGestureConfig
    classes = tuple(f"gesture_{i + 1:02d}" for i in range(25))
    # IGM configs (mie_igm.md 7): SGD 1e-2, momentum 0.9, wd 1e-4, StepLR(40, 0.1), batch 6 (test batch 1).
    train_defaults = {
        "train.epochs": 50,
        "train.batch_size": 6,
        "train.eval_batch_size": 1,
        "train.optimizer": "sgd",
        "train.lr": 1e-2,
        "train.momentum": 0.9,
        "train.weight_decay": 1e-4,
        "train.scheduler": "step",
        "train.step_size": 40,
        "train.gamma": 0.1,
        "train.select_metric": "macro_f1",
    }

    # -- raw release ------------------------------------------------------------------------------------
    @classmethod
    def raw_samples(cls, root: Path) -> list[Sample]:
        samples = []
        for split, fname in SPLIT_FILES.items():
            path = root / fname
            if not path.exists():
                raise DatasetNotFoundError(f"split file {fname} not found in {root}. {HINT}")
            lines = [x for x in path.read_text().splitlines() if x.strip()]
            for idx, line in enumerate(lines):
                fields = dict(tok.split(":", 1) for tok in line.split())
                clip_dir = root / fields["path"].lstrip("./")
                src: dict[str, Any] = {"flow": str(root / "flow_data" / split / f"{idx}.npy")}
                for mod, key in (("rgb", "color"), ("depth", "depth")):
                    name, start, end = fields[key].split(":")
                    src[mod] = (str(clip_dir / f"{name}.avi"), int(start), int(end))
                label = int(fields["label"]) - 1
                samples.append(Sample(id=f"{split}/{idx}", label=label, split=split, source=src))
        return samples

    @classmethod
    def prepare(
        cls, root: str, out: str = "", progress: bool = True, store_size: int | str = 256, window: int | str = 80
    ) -> dict[str, Any]:
        """Raw release -> packed cache: rgb/depth uint8, flow float16, ``window`` frames at store_size^2."""
        raw = check_root(cls.name, root, HINT)
        size, win = int(store_size), int(window)
        samples = cls.raw_samples(raw)

        def gesture(path: str, start: int, end: int) -> np.ndarray:
            frames, _ = read_video(path)
            seg = frames[start:end] if end > start else frames
            if len(seg) == 0:
                raise ValueError(f"{path}: empty frame range {start}:{end} of {len(frames)} frames")
            return _resize(_resample_time(seg, win), size)

        def decode(s: Sample) -> dict[str, np.ndarray]:
            if not 0 <= s.label < 25:
                raise ValueError(f"label {s.label + 1} outside 1..25")
            rgb = gesture(*s.source["rgb"])
            depth = gesture(*s.source["depth"])[..., 0]
            flow = np.load(s.source["flow"]).astype(np.float32)
            if flow.ndim != 4:
                raise ValueError(f"flow of shape {flow.shape}; expected 4 dimensions")
            if flow.shape[0] == 2:  # (2, T, H, W)
                flow = flow.transpose(1, 2, 3, 0)
            elif flow.shape[1] == 2:  # (T, 2, H, W)
                flow = flow.transpose(0, 2, 3, 1)
            if flow.shape[-1] != 2:
                raise ValueError(f"flow of shape {flow.shape} has no axis of 2 channels")
            flow = _resize(_resample_time(flow, win), size).astype(np.float16)
            return {"rgb": rgb, "depth": depth, "flow": flow}

        fields = {
            "rgb": FieldSpec((win, size, size, 3), "uint8"),
            "depth": FieldSpec((win, size, size), "uint8"),
            "flow": FieldSpec((win, size, size, 2), "float16"),
        }
        out_dir = Path(out) if out else default_cache_dir(cls.name)
        params = {"store_size": size, "window": win}
        return write_packed(out_dir, cls.name, samples, fields, decode, params, progress=progress)

    # -- training side ----------------------------------------------------------------------------------
    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(
            name=self.name,
            modalities=("rgb", "depth", "flow"),
            num_classes=25,
            class_names=self.classes,
            paper_metric="macro_f1",
            default_backbones={"rgb": "i3d", "depth": "i3d", "flow": "i3d"},
            backbone_args={"rgb": {"in_chans": 3}, "depth": {"in_chans": 1}, "flow": {"in_chans": 2}},
        )

    def _cache(self) -> PackedCache:
        if getattr(self, "_packed", None) is None:
            where = Path(os.path.expanduser(self.cfg.cache)) if self.cfg.cache else default_cache_dir(self.name)
            hint = f"Prepare it once: python -m datasets prepare nvgesture --root RAW --out {where}."
            self._packed = PackedCache(where, self.name, hint)
        return self._packed

    def make_item(self, row: int, train: bool) -> dict[str, torch.Tensor]:
        cache = self._cache()
        win, size = cache.params["window"], cache.params["store_size"]
        crop = min(self.cfg.crop, size)
        if train:
            t0 = int(torch.randint(win - min(self.cfg.clip_frames, win) + 1, (1,)))
            t1 = t0 + min(self.cfg.clip_frames, win)
            y0, x0 = (int(torch.randint(size - crop + 1, (1,))) for _ in range(2))
        else:
            t0, t1 = 0, win
            y0 = x0 = (size - crop) // 2
        sl = (slice(t0, t1), slice(y0, y0 + crop), slice(x0, x0 + crop))
        rgb = torch.from_numpy(np.array(cache.array("rgb")[row][sl])).float().div_(255.0)
        rgb = (rgb - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        depth = torch.from_numpy(np.array(cache.array("depth")[row][sl])).float().div_(255.0)
        flow = torch.from_numpy(np.array(cache.array("flow")[row][sl], dtype=np.float32))
        return {"rgb": rgb.permute(3, 0, 1, 2), "depth": depth.unsqueeze(0), "flow": flow.permute(3, 0, 1, 2)}

    def split(self, name: str) -> CachedSplit:
        return CachedSplit(self._cache(), name, self.make_item)
