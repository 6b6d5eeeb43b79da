"""Tiny raw releases generated on the fly (for the tests, the golden-sample fixtures and the loader benchmark).

Each maker writes either the layout IGM's loaders read (``layout="igm"``) or the one the suite read first
(``layout="suite"``: OGM-GE's CREMA-D, TomBERT's Twitter2015, ...). The golden-sample tests
(``tests/test_golden_datasets.py``) regenerate their releases here and check a digest of the decoded content,
so everything is computed with integer arithmetic (no random generator, no font rendering) and written
losslessly where the golden makers ask for it (PNG frames, FFV1 videos).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import wavfile

CREMA_CODES = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
KS_NAMES = ("playing piano", "dog barking", "chopping wood", "playing drums", "lawn mowing")


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


def _sizes(frame_size: tuple[int, int] | Sequence[tuple[int, int]], i: int) -> tuple[int, int]:
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
                    colour_frame(c, k, size=_sizes(frame_size, n - 1), seed=n).save(fdir / f"{30 * k:05d}{image_ext}")
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


def tree_digest(root: Path) -> str:
    """A hash of every file's path, size and bytes below ``root`` (to show prepare leaves raw data alone)."""
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def content_digest(root: Path) -> str:
    """Like :func:`tree_digest`, but images and videos enter by their decoded pixels (PNG / FFV1 bytes may
    change with the encoder's version, the pixels do not)."""
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        h.update(str(p.relative_to(root)).encode())
        if p.suffix in (".png", ".jpg"):
            with Image.open(p) as im:
                h.update(np.asarray(im.convert("RGB")).tobytes())
        elif p.suffix == ".avi":
            import av

            with av.open(str(p)) as c:
                for frame in c.decode(video=0):
                    h.update(frame.to_ndarray(format="rgb24").tobytes())
        else:
            h.update(p.read_bytes())
    return h.hexdigest()


WORDS = ("good", "bad", "happy", "sad", "love", "hate", "day", "news", "great", "awful", "the", "a", "is", "trump")
# more WordPiece entries for the IGM-layout texts: continuation pieces, digits, '@', '<', '>', '_'
EXTRA_VOCAB = ("##ness", "##s", "it", "can", "t", "user", "person", "well", "known", "or", "and", "5", "@", "<", ">")


def make_vocab(path: Path) -> Path:
    """A tiny BERT WordPiece vocabulary (a local tokenizer directory with vocab.txt)."""
    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (path / "vocab.txt").write_text("\n".join(specials + list(WORDS) + list(EXTRA_VOCAB)) + "\n")
    return path


def text_image(path: Path, label: int, k: int, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour_frame(label, k, size=size, seed=label).save(path)


# Tweets that exercise IGM's cleaning: mixed letter/digit tokens, '_', '@', '<user>', apostrophes, '$T$',
# hashtags, '-' and '/', a quoted start (pandas parses it as a quoted field), a tab, and more than 50 words.
IGM_TEXTS = (
    "RT @Trump: it's GREAT!! #news 2015 abc123 snake_case $T$ goodness",
    '"Great" day - well-known and/or <person> news',
    "can't believe it's 5 o'clock <user> @friend #blessed 100% happy_day",
    " ".join(["the good day is a great day"] * 9),
    "sad\tnews  the   bad day ~ (awful) love/hate",
    "a",
)


def _image_name(split: str, c: int, k: int, ext: str = ".jpg") -> str:
    return f"{split}_{c}_{k}{ext}"


def make_twitter2015(
    root: Path,
    per_class: int = 3,
    layout: str = "suite",
    image_size: tuple[int, int] | Sequence = (40, 30),
    image_ext: str = ".jpg",
) -> None:
    """ "suite": TomBERT's twitter2015/{train,dev,test}.tsv (+ a missing image) and twitter2015_images/;
    "igm": annotations/{train,test}.tsv with columns Label, ImageID, String, no dev file (twitter_dataset.py)."""
    if layout == "igm":
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        n = 0
        for split, count in (("train", per_class), ("test", 1)):
            lines = ["Label\tImageID\tString"]
            for c in range(3):
                for k in range(count):
                    img = _image_name(split, c, k, image_ext)
                    text_image(root / "twitter2015_images" / img, c, k, _sizes(image_size, n))
                    text = IGM_TEXTS[n % len(IGM_TEXTS)].replace("\t", " ")  # a tab would split the tsv row
                    lines.append(f"{c}\t{img}\t{text}")
                    n += 1
            (root / "annotations" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
        return
    header = "index\t#1 Label\t#2 ImageID\t#3 String\t#3 String"
    for split, n in (("train", per_class), ("dev", 1), ("test", 1)):
        lines = [header]
        for c in range(3):
            for k in range(n):
                img = _image_name(split, c, k)
                text_image(root / "twitter2015_images" / img, c, k)
                lines.append(f"{len(lines)}\t{c}\t{img}\t$T$ is {WORDS[c]} #news!\tRT @Trump")
        if split == "train":  # a missing image: listed as bad
            lines.append(f"{len(lines)}\t0\tmissing.jpg\tthe day\tX")
        (root / "twitter2015").mkdir(parents=True, exist_ok=True)
        (root / "twitter2015" / f"{split}.tsv").write_text("\n".join(lines) + "\n")


def make_sarcasm(
    root: Path,
    per_class: int = 3,
    layout: str = "suite",
    image_size: tuple[int, int] | Sequence = (40, 30),
    image_ext: str = ".jpg",
) -> None:
    """ "suite": annotations/{train,valid,test}.json, image names without folder or extension; "igm":
    annotations/{train,test}_data.json whose ``image`` is a path (IGM keeps its basename), no valid file."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    splits = [("train", per_class), ("test", 1)]
    if layout != "igm":
        splits.insert(1, ("valid", 1))
    n = 0
    for split, count in splits:
        rows = []
        for c in range(2):
            for k in range(count):
                if layout == "igm":
                    name = f"{split}{c}{k}{image_ext}"
                    text_image(root / "images" / name, c, k, _sizes(image_size, n))
                    rows.append({"image": f"dataset_image/{name}", "text": IGM_TEXTS[n % len(IGM_TEXTS)], "label": c})
                else:
                    img = f"{split}{c}{k}"
                    text_image(root / "images" / f"{img}.jpg", c, k)
                    rows.append({"image": img, "text": f"{WORDS[c]} day, {WORDS[4 + c]} it <user>", "label": c})
                n += 1
        name = f"{split}_data.json" if layout == "igm" else f"{split}.json"
        (root / "annotations" / name).write_text(json.dumps(rows))


def make_kinetics_sounds(
    root: Path,
    classes: int = 3,
    per_class: int = 2,
    layout: str = "suite",
    frame_size: tuple[int, int] | Sequence[tuple[int, int]] = (64, 48),
    image_ext: str = ".jpg",
    seconds: float = 3.0,
) -> list[str]:
    """ "suite": audio/<clip>.wav, visual/<clip>/*.jpg, train.csv / test.csv ("clip,label");
    "igm": annotations/{train,test,weight}.csv (pandas header ``label,youtube_id``, class names, training rows
    not in class order), {split}_wav/<id>.wav, {split}_img/Image-01-FPS/<id>/, plus a clip with only 3 frames
    and one without its wav (both left out by KS.py). Returns the clip ids in file order."""
    rows: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    order = [(c + 1) % classes for c in range(classes)] if layout == "igm" else list(range(classes))
    n = 0
    for c in order:
        for j in range(per_class + 1):
            split = "test" if j == per_class else "train"
            clip = f"yt{c}{j}_000010_000020"
            wav = root / (f"{split}_wav" if layout == "igm" else "audio") / f"{clip}.wav"
            fdir = root / (f"{split}_img/Image-01-FPS" if layout == "igm" else "visual") / clip
            write_wav16(wav, tone(16000, seconds + j, 220 + 200 * c, 10 * c + j), 16000)
            fdir.mkdir(parents=True, exist_ok=True)
            for k in range(4 + j):
                colour_frame(c, k, size=_sizes(frame_size, n), seed=c).save(fdir / f"frame_{k:05d}{image_ext}")
            rows[split].append((clip, c))
            n += 1
    if layout == "igm":
        short, nowav = "ytshort_000000_000010", "ytnowav_000000_000010"
        fdir = root / "train_img/Image-01-FPS" / short
        fdir.mkdir(parents=True, exist_ok=True)
        for k in range(3):
            colour_frame(0, k, size=_sizes(frame_size, 0)).save(fdir / f"frame_{k:05d}{image_ext}")
        write_wav16(root / "train_wav" / f"{short}.wav", tone(16000, seconds, 300, 99), 16000)
        fdir = root / "train_img/Image-01-FPS" / nowav
        fdir.mkdir(parents=True, exist_ok=True)
        for k in range(5):
            colour_frame(1, k, size=_sizes(frame_size, 0)).save(fdir / f"frame_{k:05d}{image_ext}")
        rows["train"] = [(short, order[0]), (nowav, order[-1])] + rows["train"]
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        for split, items in (*rows.items(), ("weight", rows["train"])):
            text = "label,youtube_id\n" + "".join(f"{KS_NAMES[c]},{clip}\n" for clip, c in items)
            (root / "annotations" / f"{split}.csv").write_text(text)
    else:
        for split, items in rows.items():
            (root / f"{split}.csv").write_text("".join(f"{clip},{c}\n" for clip, c in items))
    return [clip for items in rows.values() for clip, _ in items]


def flow_array(idx: int, frames: int, size: tuple[int, int], label: int) -> np.ndarray:
    """float32 (T, H, W, 2) flow, multiples of 1/8 (exact in float16 below 256)."""
    w, h = size
    t, y, x, ch = np.meshgrid(np.arange(frames), np.arange(h), np.arange(w), np.arange(2), indexing="ij")
    return (((x * 3 + y * 5 + t * 7 + ch * 11 + idx) % 23) - 11 + label).astype(np.float32) / 8.0


def make_nvgesture(
    root: Path,
    per_class: int = 2,
    classes: int = 3,
    frames: int = 20,
    layout: str = "suite",
    codec: str = "mpeg4",
    flow_size: tuple[int, int] = (40, 30),
    flow_frames: int | None = None,
    with_bad: bool = True,
) -> None:
    """NVGesture: the two .lst split files, Video_data/class_XX/subjectY_rZ/sk_{color,depth}.avi and the flow.

    "suite": nvgesture_*_correct_cvpr2016_v2.lst, flow_data/{split}/<index>.npy as (T, H, W, 2); "igm":
    nvgesture_*_correct_v2.lst, Video_data/flow_data/{split}/<index>.npy as (H, W, 2, T) (nvGesture.py
    101-108, 177-178). ``with_bad``: one training gesture without its flow file.
    """
    lines: dict[str, list[str]] = {"train": [], "test": []}
    n_flow = flow_frames or frames - 4
    for c in range(classes):
        for j in range(per_class + 1):
            split = "test" if j == per_class else "train"
            rel = f"./Video_data/class_{c + 1:02d}/subject{j}_r{c}"
            clip = np.stack([pattern(c, k, (40, 30), j) for k in range(frames)])
            write_video(root / rel / "sk_color.avi", clip, 30, codec)
            write_video(root / rel / "sk_depth.avi", clip[..., ::-1].copy(), 30, codec)
            idx = len(lines[split])
            if not (with_bad and split == "train" and c == classes - 1 and j == 0):
                flow = flow_array(idx, n_flow, flow_size, c)
                fdir = root / ("Video_data/flow_data" if layout == "igm" else "flow_data") / split
                fdir.mkdir(parents=True, exist_ok=True)
                np.save(fdir / f"{idx}.npy", flow.transpose(1, 2, 3, 0) if layout == "igm" else flow)
            lines[split].append(
                f"path:{rel} depth:sk_depth:2:{frames - 2} color:sk_color:2:{frames - 2} "
                f"duo_left:duo_left:3:{frames - 1} label:{c + 1}"
            )
    name = "nvgesture_{}_correct_v2.lst" if layout == "igm" else "nvgesture_{}_correct_cvpr2016_v2.lst"
    for split, rows in lines.items():
        (root / name.format(split)).write_text("\n".join(rows) + "\n")
