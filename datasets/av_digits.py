"""av_digits: an embedded audio-visual dataset that needs no download and has CREMA-D's imbalance signature.

* Visual: the 1,797 8x8 handwritten digits that scikit-learn ships, upsampled and placed with a random shift
  in ``frames`` noisy RGB frames of ``image_size`` pixels (shape (3, T, S, S)). The digit identifies the
  class, but the noise makes it slow to learn. Training draws fresh noise at every access (an augmentation);
  validation and test keep one fixed draw.
* Audio: a synthesized log-spectrogram (1, F, T) per sample. A loud tone whose pitch encodes the class *pair*
  (``PAIRS``: digits that look alike are in different pairs) makes five groups trivially separable; a second
  line 2.5 bins above (second member) or below (first member) the tone tells the member. In a share of the
  recordings (``audio_ambiguous``, every split) both lines sound and the member cannot be heard; the training
  labels of those recordings are guesses (``guess_ambiguous_labels``: the member drawn at random, as an
  annotator who cannot hear it would), validation and test labels are true.

Why this is CREMA-D's signature (issue #13; ``scripts/check_signature.py`` measures it, the README quotes it):
audio learns in a few epochs and then explains every training label it can (the rest are coin flips that no
modality can predict), so joint training leaves the visual branch almost no gradient and ends where audio
alone ends; the visual model trained alone does learn the digits, and it is exactly what the ambiguous
recordings need, so the late fusion of the two unimodal models is far above joint training.

The encoders are narrow ResNet18s (``model.resnet_width=8``) so that a CPU epoch takes seconds.

Everything is generated deterministically from ``data.seed`` (each split's noise of each modality from its own
generator, so that an option of one modality leaves the other's data unchanged); splits are stratified.
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
    visual_noise: float = 0.5
    # Amplitude of the tone that tells the class pair, and of the line that tells the member.
    audio_pair_amplitude: float = 3.0
    audio_member_amplitude: float = 3.0
    # Share of the recordings (every split) in which both member lines sound: the member cannot be heard.
    audio_ambiguous: float = 0.4
    # The training labels of those recordings guess the member (each with probability 1/2).
    guess_ambiguous_labels: bool = True
    audio_noise: float = 1.0
    val_fraction: float = 0.15
    test_fraction: float = 0.2


# The digit pairs that share a tone: digits that look alike are in different pairs, so that the visual
# modality tells the members of a pair apart well (chosen from a visual model's confusion matrix).
PAIRS = ((0, 2), (1, 3), (4, 5), (6, 9), (7, 8))
PAIR_OF = np.array([next(k for k, p in enumerate(PAIRS) if d in p) for d in range(10)])
MEMBER_OF = np.array([PAIRS[PAIR_OF[d]].index(d) for d in range(10)])
PARTNER_OF = np.array([PAIRS[PAIR_OF[d]][1 - MEMBER_OF[d]] for d in range(10)])


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
    pair, member = PAIR_OF[labels], MEMBER_OF[labels]
    pitch = 3.0 + pair * (fb - 8) / 4.0  # five well separated fundamental bins
    spec = np.zeros((n, 1, fb, ts), dtype=np.float32)
    onset = rng.integers(0, ts // 4, size=n)
    ambiguous = np.random.default_rng((cfg.seed, 1)).random(n) < cfg.audio_ambiguous
    for i in range(n):
        on = times >= onset[i]

        def line(center: float, on: np.ndarray = on) -> np.ndarray:
            return np.exp(-0.5 * ((freqs - center) / 0.8) ** 2) * on

        # the member line: above the tone (second member) or below it (first member); both when ambiguous
        above, below = line(pitch[i] + 2.5), line(pitch[i] - 2.5)
        cue = above + below if ambiguous[i] else (above if member[i] else below)
        spec[i, 0] = cfg.audio_pair_amplitude * line(pitch[i]) + cfg.audio_member_amplitude * cue

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
    for k, name in enumerate(("train", "val", "test")):
        sel = np.flatnonzero(split_of == name)
        audio, visual = spec[sel], frames[sel]
        y = labels[sel].copy()
        if name == "train" and cfg.guess_ambiguous_labels:
            flip = ambiguous[sel] & (np.random.default_rng((cfg.seed, 4)).random(len(sel)) < 0.5)
            y[flip] = PARTNER_OF[y[flip]]
        if name != "train":  # evaluation splits carry one fixed draw of the noise
            audio = audio + np.random.default_rng((cfg.seed, 2, k)).normal(0.0, cfg.audio_noise, audio.shape)
            visual = visual + np.random.default_rng((cfg.seed, 3, k)).normal(0.0, cfg.visual_noise, visual.shape)
        out[name] = {
            "audio": torch.from_numpy(audio.astype(np.float32)),
            "visual": torch.from_numpy(visual.astype(np.float32)),
            "label": torch.from_numpy(y),
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
    # 16 epochs: validation accuracy has plateaued (the mini suite's budget, EPOCHS). The quick suite runs 6.
    train_defaults = {
        "train.epochs": 16,
        "train.batch_size": 64,
        "train.optimizer": "sgd",
        "train.lr": 1e-2,
        "train.scheduler": "cosine",
        "model.resnet_width": 8,
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
        if not 0.0 <= cfg.audio_ambiguous <= 1.0:
            raise ValueError(
                f"data.audio_ambiguous must be in [0, 1], got {cfg.audio_ambiguous} (datasets/av_digits.py)"
            )
        key = tuple(getattr(cfg, f) for f in cfg.__dataclass_fields__)
        tensors = generate(key)[name]
        if name == "train":
            return NoisyTrainSplit(tensors, {"audio": cfg.audio_noise, "visual": cfg.visual_noise})
        return TensorSplit(tensors)
