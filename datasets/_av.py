"""Common code of the audio-visual releases (CREMA-D, Kinetics-Sounds): spectrogram + 1-fps frames.

A subclass states its raw layout (where the wav files, the frame folders or videos and the split files are)
and its audio recipe (sample rate, clip length, tiling); preparing, caching and loading are shared.

The default (``data.frame_sampling="official"``) feeds what IGM's ``CREMA.py`` / ``KS.py`` feed: the first
``data.frames`` entries of the frame folder's ``os.listdir`` order (recorded at prepare time), train
``RandomResizedCrop(224)`` + flip per frame with the box drawn on the original frame, test ``Resize((224,
224))``. The one difference left: the training crop is cut from the stored 224x224 copy (docs/datasets.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from benchmark.data import DatasetInfo, DatasetNotFoundError

from ._audio import load_audio, log_stft, tile_to
from ._packed import FieldSpec, PackedConfig, PackedDataset, Sample, check_root, default_cache_dir, write_packed
from ._transforms import frames_to_tensor, load_image, segment_indices
from ._video import read_video, video_frame_size

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


# Training defaults of the audio-visual sets for methods without a recipe of their own (joint, unimodal):
# SGD lr 1e-2 (IGM), momentum 0.9, weight decay 1e-4, batch 64 and StepLR(70, 0.1) (OGM-GE), standard-width
# ResNet18. Each method's dataset_defaults replace these with its official recipe.
AV_TRAIN_DEFAULTS: dict[str, Any] = {
    "train.epochs": 100,
    "train.batch_size": 64,
    "train.optimizer": "sgd",
    "train.lr": 1e-2,
    "train.momentum": 0.9,
    "train.weight_decay": 1e-4,
    "train.scheduler": "step",
    "train.step_size": 70,
    "train.gamma": 0.1,
    "model.resnet_width": 64,
}


@dataclass
class AVConfig(PackedConfig):
    # Frames per clip fed to the visual encoder.
    frames: int = 1
    # "official": the first ``frames`` entries of the frame folder's os.listdir, train and test (CREMA.py 84-90,
    # KS.py 122-134: the random index they draw is unused); "random": a random frame per equal segment of the
    # stored frames for training, the segment centres for val/test.
    frame_sampling: Literal["official", "random"] = "official"
    image_size: int = 224


class AVDataset(PackedDataset):
    """Base of the packed audio-visual datasets; subclasses fill in the class attributes and ``raw_samples``."""

    Config: ClassVar[type] = AVConfig
    classes: ClassVar[tuple[str, ...]] = ()
    sample_rate: ClassVar[int] = 22050
    seconds: ClassVar[float] = 3.0
    tile_repeats: ClassVar[int | None] = 3  # None: tile until the clip is long enough
    n_fft: ClassVar[int] = 512
    hop: ClassVar[int] = 353
    store_size: ClassVar[int] = 224
    max_frames: ClassVar[int] = 10
    # clips whose frame folder has fewer entries are left out (0: none); KS.py keeps only folders with more
    # than 3 (``len(os.listdir(dir)) > 3``); ``--option min_frames=N`` overrides it
    min_frames: ClassVar[int] = 0

    # -- raw release ------------------------------------------------------------------------------------
    @classmethod
    def audio_path(cls, root: Path, clip: str, split: str) -> Path:
        raise NotImplementedError

    @classmethod
    def frame_dir(cls, root: Path, clip: str, split: str) -> Path:
        raise NotImplementedError

    @classmethod
    def video_path(cls, root: Path, clip: str, split: str) -> Path | None:
        return None

    @classmethod
    def split_rows(cls, root: Path) -> list[tuple[str, int | str, str]]:
        """(clip, label, official split) for every clip of the official split files, in file order; the label
        is a class index, or a name that :meth:`label_indices` maps."""
        raise NotImplementedError

    @classmethod
    def label_indices(cls, root: Path, train_labels: list[int | str]) -> dict[int | str, int]:
        """Class index of every label in the split files (``train_labels``: those of the kept training clips,
        in file order). Default: the labels are the indices already."""
        return {}

    @classmethod
    def audio_features(cls, path: str | os.PathLike, pad_mode: str = "constant") -> np.ndarray:
        """The official spectrogram of one wav file: resample, loop-pad/cut, clip to [-1, 1], log |STFT|."""
        x = load_audio(path, cls.sample_rate)
        x = tile_to(x, int(round(cls.sample_rate * cls.seconds)), cls.tile_repeats)
        x = np.clip(x, -1.0, 1.0)
        return log_stft(x, cls.n_fft, cls.hop, pad_mode)

    @classmethod
    def spec_shape(cls) -> tuple[int, int]:
        return (1 + cls.n_fft // 2, 1 + int(round(cls.sample_rate * cls.seconds)) // cls.hop)

    @classmethod
    def raw_samples(cls, root: Path, min_frames: int | None = None) -> tuple[list[Sample], int]:
        """The samples of the release and the number of clips left out by the ``min_frames`` filter.

        Stored frames: the first ``max_frames`` of the folder in sorted order, plus any of the first
        ``max_frames`` ``os.listdir`` entries beyond them (so that "official" sampling finds them); the
        manifest keeps the listdir order (``listdir``) and how many sorted frames "random" sampling uses
        (``segments``). A clip with a missing wav or frames is kept, and reported bad by ``prepare``.
        """
        least = cls.min_frames if min_frames is None else int(min_frames)
        samples: list[Sample] = []
        left_out = 0
        for clip, label, split in cls.split_rows(root):
            fdir = cls.frame_dir(root, clip, split)
            audio = cls.audio_path(root, clip, split)
            source: dict[str, Any] = {"audio": str(audio), "label": label}
            extra: dict[str, Any] = {}
            entries = os.listdir(fdir) if fdir.is_dir() else []
            names = [n for n in entries if n.lower().endswith(IMAGE_EXTS)]
            video = None if names else cls.video_path(root, clip, split)
            if names:
                ordered = sorted(names)[: cls.max_frames]
                ordered += [n for n in names[: cls.max_frames] if n not in set(ordered)]
                source["frames"] = [str(fdir / n) for n in ordered]
                pos = {n: i for i, n in enumerate(ordered)}
                extra["listdir"] = [pos[n] for n in names if n in pos]  # os.listdir order, for "official"
                extra["segments"] = min(len(names), cls.max_frames)
                count, n_seen = len(ordered), len(entries)
            elif video is not None and video.exists():
                source["video"] = str(video)
                count = 0  # known after decoding; resolved in prepare()
                try:
                    n_seen = _video_seconds(str(video))[0]
                except Exception:
                    n_seen = 1
            else:
                # keep the clip: decode() reports it as bad (missing frames) and prepare goes on
                source["frames"] = [str(fdir / "<missing>")]
                count, n_seen = 1, -1
            present = audio.exists() and n_seen >= 0
            if present and n_seen < least:
                left_out += 1
                continue
            source["present"] = present
            samples.append(Sample(id=clip, label=-1, split=split, source=source, count=count, extra=extra))
        kept_train = [s.source["label"] for s in samples if s.split == "train" and s.source["present"]]
        index = cls.label_indices(root, kept_train)
        for s in samples:
            key = s.source.pop("label")
            if key in index:
                s.label = index[key]
            elif isinstance(key, (int, np.integer)) and not isinstance(key, bool) and 0 <= int(key) < len(cls.classes):
                s.label = int(key)
            else:
                s.source["bad_label"] = f"label {key!r} is not a class of the training split"
        return samples, left_out

    @classmethod
    def decode(cls, s: Sample, pad_mode: str = "constant") -> dict[str, np.ndarray]:
        if "bad_label" in s.source:
            raise ValueError(s.source["bad_label"])
        spec = cls.audio_features(s.source["audio"], pad_mode)
        if "video" in s.source:
            frames, _ = read_video(s.source["video"], cls.store_size, every_seconds=1.0)
            size = video_frame_size(s.source["video"])
            frames = frames[: s.count]
            if len(frames) < s.count:  # the container's frame count was an estimate: repeat the last frame
                frames = np.concatenate([frames, np.repeat(frames[-1:], s.count - len(frames), axis=0)])
        else:
            loaded = [load_image(p, cls.store_size) for p in s.source["frames"]]
            frames, size = np.stack([f for f, _ in loaded]), loaded[0][1]
        return {"audio": spec.astype(np.float16), "frames": frames, "frame_size": np.array(size, dtype=np.int32)}

    @classmethod
    def prepare(
        cls,
        root: str,
        out: str = "",
        progress: bool = True,
        pad_mode: str = "constant",
        min_frames: int | str | None = None,
    ) -> dict[str, Any]:
        """Raw release -> packed cache (spectrograms float16, frames uint8 store_size^2, the original frame
        size). Resumable. Clips with fewer than ``min_frames`` frame-folder entries are left out."""
        raw = check_root(cls.name, root, cls.download_hint)
        least = cls.min_frames if min_frames is None else int(min_frames)
        samples, left_out = cls.raw_samples(raw, least)
        for s in samples:  # clips given as videos: count their 1-fps frames first (cheap: metadata only)
            if "video" in s.source:
                try:
                    n, _ = _video_seconds(s.source["video"])
                    s.count = max(1, min(cls.max_frames, n))
                except Exception:
                    s.count = 1
        out_dir = Path(out) if out else default_cache_dir(cls.name)
        params = {
            "sample_rate": cls.sample_rate,
            "seconds": cls.seconds,
            "tile_repeats": cls.tile_repeats,
            "n_fft": cls.n_fft,
            "hop": cls.hop,
            "pad_mode": pad_mode,
            "store_size": cls.store_size,
            "min_frames": least,
        }
        fields = {
            "audio": FieldSpec(cls.spec_shape(), "float16"),
            "frames": FieldSpec((cls.store_size, cls.store_size, 3), "uint8", ragged=True),
            "frame_size": FieldSpec((2,), "int32"),
        }
        summary = write_packed(
            out_dir, cls.name, samples, fields, lambda s: cls.decode(s, pad_mode), params, progress=progress
        )
        summary["left_out"] = left_out
        return summary

    # -- training side ----------------------------------------------------------------------------------
    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(
            name=self.name,
            modalities=("audio", "visual"),
            num_classes=len(self.classes),
            class_names=self.classes,
            paper_metric="map",
            default_backbones={"audio": "resnet18_audio", "visual": "resnet18_visual"},
            backbone_args={"audio": {"in_chans": 1}, "visual": {"in_chans": 3}},
        )

    def make_item(self, row: int, train: bool) -> dict[str, torch.Tensor]:
        cache = self._cache()
        audio = torch.from_numpy(np.asarray(cache.array("audio")[row], dtype=np.float32)).unsqueeze(0)
        stored = cache.items("frames", row)
        entry = cache.samples[row]
        k = self.cfg.frames
        if self.cfg.frame_sampling == "official":
            order = entry.get("listdir") or list(range(len(stored)))
            picks = [order[min(j, len(order) - 1)] for j in range(k)]
        else:
            picks = segment_indices(entry.get("segments", len(stored)), k, train)
        size = cache.array("frame_size")[row] if "frame_size" in cache.fields else None  # older caches: none
        visual = frames_to_tensor(stored[picks], self.cfg.image_size, train, source_size=size)
        return {"audio": audio, "visual": visual}

    def raw_split(self, name: str) -> RawSplit:
        """The same samples decoded from the raw release on every access (for the loader benchmark)."""
        return RawSplit(self, name)


class RawSplit(torch.utils.data.Dataset):
    """Decodes each sample from the raw files at access time: what training would cost without the cache."""

    def __init__(self, ds: AVDataset, split: str) -> None:
        cache = ds._cache()
        root = check_root(ds.name, ds.cfg.root, ds.download_hint)
        samples, _ = type(ds).raw_samples(root, cache.params.get("min_frames", 0))
        by_id = {s.id: s for s in samples}
        self.samples = [by_id[i] for i in cache.splits[split]]
        self.ds = ds
        self.pad_mode = cache.params.get("pad_mode", "constant")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = self.samples[i]
        d = type(self.ds).decode(s, self.pad_mode)
        audio = torch.from_numpy(d["audio"].astype(np.float32)).unsqueeze(0)
        picks = segment_indices(len(d["frames"]), self.ds.cfg.frames, False)
        visual = frames_to_tensor(d["frames"][picks], self.ds.cfg.image_size, False)
        return {"audio": audio, "visual": visual, "label": torch.tensor(s.label), "index": torch.tensor(i)}


def _video_seconds(path: str) -> tuple[int, float]:
    """(number of whole-second frames the 1-fps extraction yields, fps) from the container's metadata."""
    import av

    with av.open(path) as c:
        st = c.streams.video[0]
        fps = float(st.average_rate or 30)
        n = st.frames or 0
        if not n and st.duration and st.time_base:
            n = int(round(float(st.duration * st.time_base) * fps))
        if not n and c.duration:
            n = int(round(c.duration / 1e6 * fps))
        if not n:
            raise DatasetNotFoundError(f"cannot count frames of {path}")
        interval = max(int(fps), 1)
        return (n + interval - 1) // interval, fps
