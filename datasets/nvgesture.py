"""NVGesture (Molchanov et al. 2016): 1,532 dynamic hand gestures, 25 classes; RGB, depth and optical flow.

The default pipeline feeds what IGM's ``datasets/nvGesture.py`` feeds (mie_igm.md 10; data preparation of
Wu et al. 2022, greedy MML):

* RGB (``sk_color.avi``) and depth (``sk_depth.avi``): the frames from the list's start to its end, each
  resized to 256x256 (bilinear, as ``cv2.resize``), placed at the start of an 80-frame container whose other
  frames stay zero (``window_fill=zeros``; a gesture longer than 80 frames is a bad input, IGM's loader fails on
  it); depth is channel 0 of OpenCV's BGR frame, scaled to [0, 1];
* RGB keeps OpenCV's **BGR** channel order and is normalised with the ImageNet (RGB) statistics, as IGM feeds
  its ImageNet-pretrained I3D (``data.channel_order=rgb`` is the corrected order, a documented option);
* optical flow: ``<index>.npy`` of shape (H, W, 2, T) (IGM; other layouts with ``--option flow_layout=``),
  kept at its own size (256x256 in IGM's release; resized only for a ``store_size`` other than 256) and **all**
  T frames, in training too (the 64-frame cut is commented out in IGM; ``data.flow_frames=window`` cuts it to
  the RGB window);
* train: 64 consecutive frames from a start in [0, 16] and one 224 crop at an offset in [0, 32]^2, shared by
  the three modalities, no flip (IGM's flip probability is 0); test: all 80 frames (and all flow frames), the
  centre 224 crop.

Splits: ``nvgesture_{train,test}_correct_v2.lst`` (IGM's names) or ``..._correct_cvpr2016_v2.lst`` (the
release's), 1,050 / 482; validation: 10 % of train, stratified, seed 0 (the official code has none and
selects on test).

Raw layout under ``data.root``::

    nvgesture_train_correct_v2.lst, nvgesture_test_correct_v2.lst   (or ..._correct_cvpr2016_v2.lst)
    Video_data/class_XX/subjectYY_rZ/{sk_color.avi, sk_depth.avi}
    Video_data/flow_data/{train,test}/<line index>.npy              (IGM; or flow_data/{train,test}/)

The cache is large at the default size (uint8 RGB 80x256x256x3 ~ 15.7 MB per gesture, depth 5.2 MB, float16
flow 80x256x256x2 21 MB: ~64 GB in all); ``--option store_size=128`` divides it by four.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data import DatasetInfo, DatasetNotFoundError
from benchmark.registry import register_dataset

from ._packed import (
    CachedSplit,
    FieldSpec,
    PackedConfig,
    PackedDataset,
    Sample,
    check_root,
    default_cache_dir,
    write_packed,
)
from ._transforms import IMAGENET_MEAN, IMAGENET_STD
from ._video import read_video

LIST_NAMES = ("nvgesture_{}_correct_v2.lst", "nvgesture_{}_correct_cvpr2016_v2.lst")  # IGM's, the release's
FLOW_DIRS = ("Video_data/flow_data", "flow_data")
IGM_SIZE = 256  # nvGesture.py resizes every frame to 256x256 and crops 224
# axis order of a flow file -> the transpose to (T, H, W, 2)
FLOW_LAYOUTS = {"HW2T": (3, 0, 1, 2), "THW2": (0, 1, 2, 3), "2THW": (1, 2, 3, 0), "T2HW": (0, 2, 3, 1)}
HINT = (
    "Request NVGesture from NVIDIA (https://research.nvidia.com/publication/2016-06_online-detection-and-"
    "classification-dynamic-hand-gestures-recurrent-3d-convolutional), unpack nvGesture_v1 (Video_data/ and the "
    "two nvgesture_*_correct_cvpr2016_v2.lst files, or IGM's nvgesture_*_correct_v2.lst) into RAW and put the "
    "precomputed optical flow in RAW/Video_data/flow_data/{train,test}/<index>.npy (shape H, W, 2, T)."
)


@dataclass
class NVGestureConfig(PackedConfig):
    clip_frames: int = 64  # consecutive frames per training clip (test: the whole window)
    crop: int = 224
    # "bgr": OpenCV's order, as IGM feeds its ImageNet (RGB) I3D; "rgb": the order the pretrained I3D expects
    channel_order: Literal["bgr", "rgb"] = "bgr"
    # "all": every flow frame, train and test (IGM); "window": the training clip's frames of the flow as well
    flow_frames: Literal["all", "window"] = "all"


def _resample_time(x: np.ndarray, n: int) -> np.ndarray:
    idx = np.linspace(0, len(x) - 1, n).round().astype(int) if len(x) != n else np.arange(n)
    return x[idx]


def _zero_window(x: np.ndarray, n: int, what: str) -> np.ndarray:
    """IGM's container: the frames first, zeros after; more than ``n`` frames is an error (IGM: IndexError)."""
    if len(x) > n:
        raise ValueError(
            f"{what}: {len(x)} frames do not fit the {n}-frame window (IGM's loader fails on it); "
            f"prepare with --option window_fill=resample to resample it"
        )
    out = np.zeros((n, *x.shape[1:]), dtype=x.dtype)
    out[: len(x)] = x
    return out


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, C) -> (T, size, size, C), bilinear without antialiasing (``cv2.resize``'s INTER_LINEAR)."""
    if x.shape[1] == size and x.shape[2] == size:
        return x
    t = torch.from_numpy(np.asarray(x, dtype=np.float32)).permute(0, 3, 1, 2)
    y = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    return np.clip(y.round(), 0, 255).astype(np.uint8) if x.dtype == np.uint8 else y.astype(x.dtype)


def flow_frames_first(flow: np.ndarray, layout: str = "auto") -> np.ndarray:
    """A flow array -> (T, H, W, 2). ``layout``: one of FLOW_LAYOUTS, or "auto" (the one axis of length 2)."""
    if flow.ndim != 4:
        raise ValueError(f"flow of shape {flow.shape}; expected 4 dimensions")
    if layout == "auto":
        twos = [i for i, n in enumerate(flow.shape) if n == 2]
        if len(twos) != 1:
            raise ValueError(
                f"flow of shape {flow.shape}: cannot tell the channel axis; prepare with "
                f"--option flow_layout=HW2T|THW2|2THW|T2HW"
            )
        layout = {2: "HW2T", 3: "THW2", 0: "2THW", 1: "T2HW"}[twos[0]]
    if layout not in FLOW_LAYOUTS:
        raise ValueError(f"unknown flow_layout {layout!r}; expected auto or one of {sorted(FLOW_LAYOUTS)}")
    out = flow.transpose(FLOW_LAYOUTS[layout])
    if out.shape[-1] != 2:
        raise ValueError(f"flow of shape {flow.shape} has no channel axis of 2 in layout {layout}")
    return out


@register_dataset
class NVGesture(PackedDataset):
    """NVGesture: RGB, depth and optical-flow clips of 25 hand gestures (I3D per modality)."""

    name = "nvgesture"
    download_hint = HINT
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
    def list_file(cls, root: Path, split: str) -> Path:
        for pattern in LIST_NAMES:
            if (root / pattern.format(split)).exists():
                return root / pattern.format(split)
        names = " or ".join(p.format(split) for p in LIST_NAMES)
        raise DatasetNotFoundError(f"split file {names} not found in {root}. {HINT}")

    @classmethod
    def raw_samples(cls, root: Path) -> list[Sample]:
        samples = []
        for split in ("train", "test"):
            path = cls.list_file(root, split)
            lines = [x for x in path.read_text().splitlines() if x.strip()]
            flow_dir = next((root / d / split for d in FLOW_DIRS if (root / d / split).is_dir()), None)
            for idx, line in enumerate(lines):
                fields = dict(tok.split(":", 1) for tok in line.split())
                clip_dir = root / fields["path"].lstrip("./")
                flow = (flow_dir or root / FLOW_DIRS[0] / split) / f"{idx}.npy"
                src: dict[str, Any] = {"flow": str(flow)}
                for mod, key in (("rgb", "color"), ("depth", "depth")):
                    name, start, end = fields[key].split(":")
                    src[mod] = (str(clip_dir / f"{name}.avi"), int(start), int(end))
                label = int(fields["label"]) - 1
                samples.append(Sample(id=f"{split}/{idx}", label=label, split=split, source=src))
        return samples

    @classmethod
    def prepare(
        cls,
        root: str,
        out: str = "",
        progress: bool = True,
        store_size: int | str = IGM_SIZE,
        window: int | str = 80,
        window_fill: str = "zeros",
        flow_layout: str = "auto",
        flow_dtype: str = "float16",
    ) -> dict[str, Any]:
        """Raw release -> packed cache: rgb/depth uint8 (window, store_size^2), flow (T, H, W, 2) per gesture.

        ``window_fill``: "zeros" (IGM's zero-filled container) or "resample" (every gesture evenly resampled to
        ``window`` frames). Flow keeps its own size when ``store_size`` is IGM's 256, else it is resized to
        store_size^2; all its frames are kept (``count`` in the manifest).
        """
        raw = check_root(cls.name, root, cls.download_hint)
        size, win = int(store_size), int(window)
        if window_fill not in ("zeros", "resample"):
            raise ValueError(f"window_fill={window_fill!r}; expected zeros or resample")
        if flow_dtype not in ("float16", "float32"):
            raise ValueError(f"flow_dtype={flow_dtype!r}; expected float16 or float32")
        samples = cls.raw_samples(raw)
        flow_hw = None
        for s in samples:  # flow frames (the ragged count) and size, from the .npy headers
            try:
                shape = flow_frames_first(np.load(s.source["flow"], mmap_mode="r"), flow_layout).shape
            except Exception:
                continue  # decode() reports it
            s.count = int(shape[0])
            flow_hw = flow_hw or ((shape[1], shape[2]) if size == IGM_SIZE else (size, size))

        def gesture(path: str, start: int, end: int) -> np.ndarray:
            frames, _ = read_video(path)
            seg = frames[start:end] if end > start else frames
            if len(seg) == 0:
                raise ValueError(f"{path}: empty frame range {start}:{end} of {len(frames)} frames")
            if window_fill == "zeros":
                return _zero_window(_resize(seg, size), win, path)
            return _resize(_resample_time(seg, win), size)

        def decode(s: Sample) -> dict[str, np.ndarray]:
            if not 0 <= s.label < 25:
                raise ValueError(f"label {s.label + 1} outside 1..25")
            rgb = gesture(*s.source["rgb"])
            depth = gesture(*s.source["depth"])[..., 2]  # channel 0 of OpenCV's BGR frame
            flow = flow_frames_first(np.load(s.source["flow"]), flow_layout).astype(np.float32)
            if flow_hw is None or (size == IGM_SIZE and flow.shape[1:3] != flow_hw):
                raise ValueError(f"flow of size {flow.shape[1:3]}; the other flow files are {flow_hw}")
            if size != IGM_SIZE:
                flow = _resize(flow, size)
            return {"rgb": rgb, "depth": depth, "flow": flow.astype(flow_dtype)}

        fields = {
            "rgb": FieldSpec((win, size, size, 3), "uint8"),
            "depth": FieldSpec((win, size, size), "uint8"),
            "flow": FieldSpec((*(flow_hw or (size, size)), 2), flow_dtype, ragged=True),
        }
        out_dir = Path(out) if out else default_cache_dir(cls.name)
        params = {"store_size": size, "window": win, "window_fill": window_fill, "flow_layout": flow_layout}
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

    def clip_params(self, train: bool) -> tuple[int, int, int]:
        """(first frame, crop top, crop left): random for training (torch's generator), the centre otherwise."""
        cache = self._cache()
        win, size = cache.params["window"], cache.params["store_size"]
        crop = min(self.cfg.crop, size)
        if not train:
            return 0, (size - crop) // 2, (size - crop) // 2
        t0 = int(torch.randint(win - min(self.cfg.clip_frames, win) + 1, (1,)))
        y0, x0 = (int(torch.randint(size - crop + 1, (1,))) for _ in range(2))
        return t0, y0, x0

    def item_at(self, row: int, train: bool, t0: int, y0: int, x0: int) -> dict[str, torch.Tensor]:
        """One sample cut at the given clip start and crop corner (training: ``clip_frames`` frames)."""
        cache = self._cache()
        win, size = cache.params["window"], cache.params["store_size"]
        crop = min(self.cfg.crop, size)
        t1 = t0 + min(self.cfg.clip_frames, win) if train else win
        sl = (slice(t0, t1), slice(y0, y0 + crop), slice(x0, x0 + crop))
        rgb = np.asarray(cache.array("rgb")[row][sl])
        if self.cfg.channel_order == "bgr":
            rgb = rgb[..., ::-1]
        rgb = torch.from_numpy(np.ascontiguousarray(rgb)).float().div_(255.0)
        rgb = (rgb - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        depth = torch.from_numpy(np.array(cache.array("depth")[row][sl])).float().div_(255.0)
        # (caches prepared before #16 hold the flow resampled to the window: one (window, H, W, 2) block per row)
        flow = cache.items("flow", row) if cache.fields["flow"]["ragged"] else cache.array("flow")[row]
        if train and self.cfg.flow_frames == "window":
            flow = flow[sl]
        else:
            flow = flow[:, sl[1], sl[2]]
        flow = torch.from_numpy(np.array(flow, dtype=np.float32))
        return {"rgb": rgb.permute(3, 0, 1, 2), "depth": depth.unsqueeze(0), "flow": flow.permute(3, 0, 1, 2)}

    def make_item(self, row: int, train: bool) -> dict[str, torch.Tensor]:
        return self.item_at(row, train, *self.clip_params(train))

    def split(self, name: str) -> CachedSplit:
        out = super().split(name)
        if out.train and self.cfg.flow_frames == "all":
            lengths = sorted({int(self._cache().counts[r]) for r in out.rows})
            if len(lengths) > 1:
                raise ValueError(
                    f"the training flow files hold different numbers of frames ({lengths}): with "
                    f"data.flow_frames=all (IGM) they cannot be batched, nor can IGM's loader batch them; "
                    f"set data.flow_frames=window or give every flow file the same length"
                )
        return out
