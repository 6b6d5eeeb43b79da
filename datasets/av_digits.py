"""av_digits: an embedded audio-visual dataset that needs no download and shows modality imbalance.

* Visual: the 1,797 8x8 handwritten digits that scikit-learn ships, upsampled and placed with a random shift
  in ``frames`` noisy RGB frames of ``image_size`` pixels (shape (3, T, S, S)). The digit identifies the
  class, but the noise makes it slow to learn. Training draws fresh noise at every access (an augmentation);
  validation and test keep one fixed draw.
* Audio: a synthesized log-spectrogram (1, F, T) per sample. A loud, clean tone whose pitch encodes the class
  *pair* ({0,1}, {2,3}, ...) makes five coarse groups trivially separable; which member of the pair it is shows
  only as a faint second harmonic buried in noise. Audio is therefore learned fast but saturates well below
  the visual ceiling, like CREMA-D's dominant audio.

The encoders are narrow ResNet18s (``model.resnet_width=16``) so that a CPU epoch takes seconds.

Everything is generated deterministically from ``data.seed``; splits are stratified (train / val / test).
Measured figures are in the README (section "The embedded dataset").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data import DatasetConfig, DatasetInfo, MultimodalDataset, TensorSplit
from benchmark.registry import register_dataset


@dataclass
class AVDigitsConfig(DatasetConfig):
    seed: int = 0
    frames: int = 3
    image_size: int = 16
    freq_bins: int = 32
    time_steps: int = 24
    # Std of the Gaussian noise added to each visual frame (digit intensities are in [0, 1]).
    visual_noise: float = 0.6
    # Amplitude of the tone that tells the class pair, and of the faint cue that tells the member.
    audio_pair_amplitude: float = 3.0
    audio_member_amplitude: float = 0.25
    audio_noise: float = 1.0
    val_fraction: float = 0.15
    test_fraction: float = 0.2


@lru_cache(maxsize=4)
def generate(cfg_key: tuple) -> dict[str, dict[str, torch.Tensor]]:
    cfg = AVDigitsConfig(*cfg_key)
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # (N, 8, 8) in [0, 1]
    labels = digits.target.astype(np.int64)
    n = len(labels)
    rng = np.random.default_rng(cfg.seed)

    # -- visual: T noisy, shifted, tinted frames ------------------------------------------------------
    s, t = cfg.image_size, cfg.frames
    inner = max(8, int(round(s * 0.75)))
    up = F.interpolate(torch.from_numpy(images)[:, None], size=(inner, inner), mode="bilinear", align_corners=False)
    up = up[:, 0].numpy()
    frames = np.zeros((n, 3, t, s, s), dtype=np.float32)
    max_off = s - inner
    tint = rng.uniform(0.5, 1.0, size=(n, 3)).astype(np.float32)
    for k in range(t):
        offs = rng.integers(0, max_off + 1, size=(n, 2))
        for i in range(n):
            y, x = offs[i]
            frames[i, :, k, y : y + inner, x : x + inner] = up[i][None] * tint[i][:, None, None]

    # -- audio: pair tone (loud) + member cue (faint) + noise --------------------------------------------
    fb, ts = cfg.freq_bins, cfg.time_steps
    freqs = np.arange(fb, dtype=np.float32)[:, None]
    times = np.arange(ts, dtype=np.float32)[None, :]
    pair = labels // 2
    member = labels % 2
    pitch = 3.0 + pair * (fb - 8) / 4.0  # five well separated fundamental bins
    spec = np.zeros((n, 1, fb, ts), dtype=np.float32)
    onset = rng.integers(0, ts // 4, size=n)
    for i in range(n):
        on = times >= onset[i]
        tone = np.exp(-0.5 * ((freqs - pitch[i]) / 0.8) ** 2) * on
        # the member cue: a faint harmonic above (member 1) or a faint band below (member 0) the tone
        cue_bin = pitch[i] + (2.5 if member[i] else -2.5)
        cue = np.exp(-0.5 * ((freqs - cue_bin) / 0.8) ** 2) * on
        spec[i, 0] = cfg.audio_pair_amplitude * tone + cfg.audio_member_amplitude * cue

    # -- stratified split --------------------------------------------------------------------------------
    split_of = np.empty(n, dtype=object)
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * cfg.test_fraction))
        n_val = int(round(len(idx) * cfg.val_fraction))
        split_of[idx[:n_test]] = "test"
        split_of[idx[n_test : n_test + n_val]] = "val"
        split_of[idx[n_test + n_val :]] = "train"
    out = {}
    for name in ("train", "val", "test"):
        sel = np.flatnonzero(split_of == name)
        audio, visual = spec[sel], frames[sel]
        if name != "train":  # evaluation splits carry one fixed draw of the noise
            audio = audio + rng.normal(0.0, cfg.audio_noise, size=audio.shape).astype(np.float32)
            visual = visual + rng.normal(0.0, cfg.visual_noise, size=visual.shape).astype(np.float32)
        out[name] = {
            "audio": torch.from_numpy(audio),
            "visual": torch.from_numpy(visual),
            "label": torch.from_numpy(labels[sel]),
            "index": torch.from_numpy(sel.astype(np.int64)),
        }
    return out


class NoisyTrainSplit(TensorSplit):
    """The training split: clean signals plus Gaussian noise drawn afresh at every access.

    The noise comes from torch's global generator, which the trainer seeds and checkpoints, so a run is
    reproducible and a resumed run draws the same noise as an uninterrupted one.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], noise: dict[str, float]) -> None:
        super().__init__(tensors)
        self.noise = noise

    def _add_noise(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for key, std in self.noise.items():
            batch[key] = batch[key] + std * torch.randn(batch[key].shape)
        return batch

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self._add_noise(super().__getitem__(i))

    def __getitems__(self, indices) -> dict[str, torch.Tensor]:
        return self._add_noise(super().__getitems__(indices))


@register_dataset
class AVDigits(MultimodalDataset):
    """Embedded audio-visual digits (sklearn digits + synthetic tones); no download, shows modality imbalance."""

    name = "av_digits"
    Config = AVDigitsConfig
    train_defaults = {
        "train.epochs": 10,
        "train.batch_size": 64,
        "train.optimizer": "sgd",
        "train.lr": 1e-2,
        "train.scheduler": "none",
        "model.resnet_width": 16,
    }

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(
            name=self.name,
            modalities=("audio", "visual"),
            num_classes=10,
            class_names=tuple(str(i) for i in range(10)),
            paper_metric="map",
            default_backbones={"audio": "resnet18_audio", "visual": "resnet18_visual"},
            backbone_args={"audio": {"in_chans": 1}, "visual": {"in_chans": 3}},
        )

    def split(self, name: str) -> TensorSplit:
        cfg = self.cfg
        key = tuple(getattr(cfg, f) for f in cfg.__dataclass_fields__)
        tensors = generate(key)[name]
        if name == "train":
            return NoisyTrainSplit(tensors, {"audio": cfg.audio_noise, "visual": cfg.visual_noise})
        return TensorSplit(tensors)
