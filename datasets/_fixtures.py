"""Tiny raw releases in each dataset's own layout, generated on the fly (for the tests and the loader benchmark)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.io import wavfile

CREMA_CODES = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")


def tone(sr: int, seconds: float, freq: float, seed: int) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(seed)
    x = 0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def write_wav16(path: Path, x: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, sr, (np.clip(x, -1, 1) * 32767).astype(np.int16))


def colour_frame(label: int, k: int, size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed * 100 + k)
    base = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    base[..., label % 3] = 60 + 30 * label
    base = np.clip(base + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(base)


def write_video(path: Path, frames: np.ndarray, fps: int, codec: str) -> None:
    """uint8 (N, H, W, 3) frames -> a video file with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def make_crema_d(
    root: Path,
    per_class: int = 2,
    with_video: bool = True,
    with_bad: bool = True,
    frame_size: tuple[int, int] = (64, 48),
) -> list[str]:
    """CREMA-D layout: AudioWAV/*.wav (16 kHz), Image-01-FPS/<clip>/*.jpg, VideoFlash/*.flv, train/test.csv."""
    clips = []
    rows = {"train": [], "test": []}
    n = 0
    for c, code in enumerate(CREMA_CODES):
        for j in range(per_class + 1):
            clip = f"{1001 + n}_IEO_{code}_XX"
            n += 1
            write_wav16(root / "AudioWAV" / f"{clip}.wav", tone(16000, 1.2 + 0.3 * j, 200 + 150 * c, n), 16000)
            if with_video and n == 2:
                frames = np.stack([np.asarray(colour_frame(c, k, seed=n)) for k in range(60)])
                write_video(root / "VideoFlash" / f"{clip}.flv", frames, 30, "flv")
            else:
                fdir = root / "Image-01-FPS" / clip
                fdir.mkdir(parents=True, exist_ok=True)
                for k in range(2 + j % 2):
                    colour_frame(c, k, size=frame_size, seed=n).save(fdir / f"{30 * k:05d}.jpg")
            rows["test" if j == per_class else "train"].append(f"{clip},{code}")
            clips.append(clip)
    if with_bad:  # a truncated wav: prepare must list it and go on
        bad = f"{1001 + n}_IEO_ANG_XX"
        (root / "AudioWAV" / f"{bad}.wav").write_bytes(b"RIFF\x00\x00")
        fdir = root / "Image-01-FPS" / bad
        fdir.mkdir(parents=True, exist_ok=True)
        colour_frame(5, 0).save(fdir / "00000.jpg")
        rows["train"].append(f"{bad},ANG")
        clips.append(bad)
    for split, lines in rows.items():  # CRLF + BOM, like the OGM-GE files
        (root / f"{split}.csv").write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    return clips


def tree_digest(root: Path) -> str:
    """A hash of every file's path, size and bytes below ``root`` (to show prepare leaves raw data alone)."""
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


WORDS = ("good", "bad", "happy", "sad", "love", "hate", "day", "news", "great", "awful", "the", "a", "is", "trump")


def make_vocab(path: Path) -> Path:
    """A tiny BERT WordPiece vocabulary (a local tokenizer directory with vocab.txt)."""
    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (path / "vocab.txt").write_text("\n".join(specials + list(WORDS)) + "\n")
    return path


def text_image(path: Path, label: int, k: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = colour_frame(label, k, size=(40, 30), seed=label)
    ImageDraw.Draw(im).text((2, 2), WORDS[label], fill=(255, 255, 255))
    im.save(path)


def make_twitter2015(root: Path, per_class: int = 3) -> None:
    """TomBERT layout: twitter2015/{train,dev,test}.tsv and twitter2015_images/."""
    header = "index\t#1 Label\t#2 ImageID\t#3 String\t#3 String"
    for split, n in (("train", per_class), ("dev", 1), ("test", 1)):
        lines = [header]
        for c in range(3):
            for k in range(n):
                img = f"{split}_{c}_{k}.jpg"
                text_image(root / "twitter2015_images" / img, c, k)
                lines.append(f"{len(lines)}\t{c}\t{img}\t$T$ is {WORDS[c]} #news!\tRT @Trump")
        if split == "train":  # a missing image: listed as bad
            lines.append(f"{len(lines)}\t0\tmissing.jpg\tthe day\tX")
        (root / "twitter2015").mkdir(parents=True, exist_ok=True)
        (root / "twitter2015" / f"{split}.tsv").write_text("\n".join(lines) + "\n")


def make_sarcasm(root: Path, per_class: int = 3) -> None:
    """IGM layout: annotations/{train,valid,test}.json with image/text/label, images/."""
    import json

    for split, n in (("train", per_class), ("valid", 1), ("test", 1)):
        rows = []
        for c in range(2):
            for k in range(n):
                img = f"{split}{c}{k}"
                text_image(root / "images" / f"{img}.jpg", c, k)
                rows.append({"image": img, "text": f"{WORDS[c]} day, {WORDS[4 + c]} it <user>", "label": c})
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{split}.json").write_text(json.dumps(rows))


def make_kinetics_sounds(root: Path, classes: int = 3, per_class: int = 2) -> None:
    """KS layout: audio/<clip>.wav, visual/<clip>/*.jpg, train.csv / test.csv ("clip,label")."""
    rows = {"train": [], "test": []}
    for c in range(classes):
        for j in range(per_class + 1):
            clip = f"yt{c}{j}_000010_000020"
            write_wav16(root / "audio" / f"{clip}.wav", tone(16000, 3.0 + j, 220 + 200 * c, 10 * c + j), 16000)
            fdir = root / "visual" / clip
            fdir.mkdir(parents=True, exist_ok=True)
            for k in range(4 + j):
                colour_frame(c, k, seed=c).save(fdir / f"frame_{k:05d}.jpg")
            rows["test" if j == per_class else "train"].append(f"{clip},{c}")
    for split, lines in rows.items():
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")


def make_nvgesture(root: Path, per_class: int = 2, classes: int = 3, frames: int = 20) -> None:
    """NVGesture layout: the two .lst split files, Video_data/class_XX/subjectY_rZ/sk_{color,depth}.avi, flow_data/."""
    lines: dict[str, list[str]] = {"train": [], "test": []}
    for c in range(classes):
        for j in range(per_class + 1):
            split = "test" if j == per_class else "train"
            rel = f"./Video_data/class_{c + 1:02d}/subject{j}_r{c}"
            clip = np.stack([np.asarray(colour_frame(c, k, size=(40, 30), seed=j)) for k in range(frames)])
            write_video(root / rel / "sk_color.avi", clip, 30, "mpeg4")
            write_video(root / rel / "sk_depth.avi", clip[..., ::-1].copy(), 30, "mpeg4")
            idx = len(lines[split])
            if not (split == "train" and c == classes - 1 and j == 0):  # one gesture without flow: listed as bad
                flow = np.random.default_rng(idx).standard_normal((frames - 4, 30, 40, 2)).astype(np.float32) + c
                (root / "flow_data" / split).mkdir(parents=True, exist_ok=True)
                np.save(root / "flow_data" / split / f"{idx}.npy", flow)
            lines[split].append(
                f"path:{rel} depth:sk_depth:2:{frames - 2} color:sk_color:2:{frames - 2} "
                f"duo_left:duo_left:3:{frames - 1} label:{c + 1}"
            )
    for split, rows in lines.items():
        (root / f"nvgesture_{split}_correct_cvpr2016_v2.lst").write_text("\n".join(rows) + "\n")
