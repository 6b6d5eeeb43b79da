"""Audio features of the audio-visual datasets: wav reading, resampling, loop-padding, log-STFT spectrogram."""

from __future__ import annotations

import math
import os

import numpy as np


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
