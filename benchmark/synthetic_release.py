"""A synthetic CREMA-D-shaped raw release, generated on the fly for the loader benchmark
(:mod:`benchmark.bench_data`) and the dataset tests (``tests/fake_releases.py`` builds the other releases
from the same pieces).

Everything is computed with integer arithmetic (no random generator, no font rendering), so a release is the
same on every machine, and written losslessly where asked (PNG frames, FFV1 videos).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import wavfile

CREMA_CODES = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")


def tone(sr: int, seconds: float, freq: float, seed: int) -> np.ndarray:
    """A triangle wave of ``freq`` Hz (amplitude 0.4) plus a little pseudo-noise; float32 in [-0.5, 0.5]."""
    n = np.arange(int(sr * seconds), dtype=np.int64)
    phase = (n * int(freq * 4096) // sr) % 4096  # integer phase: the same samples on every machine
    tri = np.abs(phase - 2048) / 1024.0 - 1.0
    noise = ((n * 1103515245 + 12345 * (seed + 1)) % 65536) / 65536.0 - 0.5
    return (0.4 * tri + 0.1 * noise).astype(np.float32)


def write_wav16(path: Path, x: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, sr, (np.clip(x, -1, 1) * 32767).astype(np.int16))


def pattern(label: int, k: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """uint8 (H, W, 3) for ``size`` = (W, H): a class colour, diagonal stripes, a gradient and a bright corner
    block, so that crops, flips, resizes and channel orders all change the pixels."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), dtype=np.int64)
    img[..., 0] = 40 + 30 * (label % 6) + (x * 97) // max(w, 1)
    img[..., 1] = 20 + (y * 151) // max(h, 1) + 12 * ((x + 2 * y + 3 * k + seed) % 7)
    img[..., 2] = 200 - 25 * (label % 5) - 9 * (((x // 3) + (y // 3) + k) % 5)
    img[: max(h // 4, 1), : max(w // 5, 1)] = (250, 240 - 10 * (k % 4), 30 + 20 * (seed % 5))
    return np.clip(img, 0, 255).astype(np.uint8)


def colour_frame(label: int, k: int, size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    return Image.fromarray(pattern(label, k, size, seed))


def write_video(path: Path, frames: np.ndarray, fps: int, codec: str) -> None:
    """uint8 (N, H, W, 3) RGB frames -> a video file with PyAV ("ffv1": lossless, any other: yuv420p)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def frame_size_of(frame_size: tuple[int, int] | Sequence[tuple[int, int]], i: int) -> tuple[int, int]:
    """``frame_size`` is one (W, H) or a list of them used in turn, clip by clip."""
    if isinstance(frame_size[0], int):
        return frame_size  # type: ignore[return-value]
    return frame_size[i % len(frame_size)]  # type: ignore[return-value]


def make_crema_d(
    root: Path,
    per_class: int = 2,
    with_video: bool = True,
    with_bad: bool = True,
    frame_size: tuple[int, int] | Sequence[tuple[int, int]] = (64, 48),
    layout: str = "suite",
    codes: Sequence[str] = CREMA_CODES,
    image_ext: str = ".jpg",
    seconds: float = 1.2,
) -> list[str]:
    """CREMA-D: AudioWAV/*.wav (16 kHz), Image-01-FPS/<clip>/ frames, train/test.csv rows ``clip,EMO``.

    "suite": the csv files at the top (OGM-GE's), one clip as VideoFlash/*.flv when ``with_video``; "igm": the
    csv files in annotations/ (CREMA.py 172-173), frame folders only. ``with_bad`` adds a truncated wav.
    """
    clips = []
    rows: dict[str, list[str]] = {"train": [], "test": []}
    n = 0
    for code in codes:
        c = CREMA_CODES.index(code)
        for j in range(per_class + 1):
            clip = f"{1001 + n}_IEO_{code}_XX"
            n += 1
            write_wav16(root / "AudioWAV" / f"{clip}.wav", tone(16000, seconds + 0.3 * j, 200 + 150 * c, n), 16000)
            if with_video and layout == "suite" and n == 2:
                frames = np.stack([pattern(c, k, (64, 48), n) for k in range(60)])
                write_video(root / "VideoFlash" / f"{clip}.flv", frames, 30, "flv")
            else:
                fdir = root / "Image-01-FPS" / clip
                fdir.mkdir(parents=True, exist_ok=True)
                for k in range(2 + j % 2):
                    colour_frame(c, k, size=frame_size_of(frame_size, n - 1), seed=n).save(
                        fdir / f"{30 * k:05d}{image_ext}"
                    )
            rows["test" if j == per_class else "train"].append(f"{clip},{code}")
            clips.append(clip)
    if with_bad:  # a truncated wav: prepare must list it and go on
        bad = f"{1001 + n}_IEO_ANG_XX"
        (root / "AudioWAV" / f"{bad}.wav").write_bytes(b"RIFF\x00\x00")
        fdir = root / "Image-01-FPS" / bad
        fdir.mkdir(parents=True, exist_ok=True)
        colour_frame(5, 0).save(fdir / f"00000{image_ext}")
        rows["train"].append(f"{bad},ANG")
        clips.append(bad)
    where = root / "annotations" if layout == "igm" else root
    where.mkdir(parents=True, exist_ok=True)
    for split, lines in rows.items():  # CRLF + BOM, like the OGM-GE files
        (where / f"{split}.csv").write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    return clips
