"""Kinetics-Sounds: 31 Kinetics-400 classes where the sound matters; 10-s YouTube clips, audio + 1-fps frames.

Follows IGM's ``datasets/KS.py`` (mie_igm.md 10): ``librosa.load(sr=35400)``, tile until >= 10 s, keep the first
10 s, clip to [-1, 1], STFT n_fft 512 / hop 353 (Hann, centred), ``log(|S| + 1e-7)`` -> (1, 257, 1003); 1-fps
frames, the first 3 of the folder's ``os.listdir`` per clip (``data.frames``); same image transforms as
CREMA-D. Only clips whose frame folder holds more than 3 entries are kept (``KS.py`` 35, 49: the default
``min_frames=4``; ``--option min_frames=0`` keeps all).

Raw layouts under ``data.root``, either IGM's::

    annotations/train.csv, test.csv   # pandas, with a header: columns label, youtube_id (KS.py 28-54)
    train_wav/<youtube_id>.wav, test_wav/...
    train_img/Image-01-FPS/<youtube_id>/*.jpg, test_img/...

(class index = order of first appearance in train.csv among the kept clips, as KS.py; ``weight.csv``, which
KS.py also requires, is not needed) or the suite's earlier one::

    audio/<clip>.wav                  # 16 kHz or any rate; resampled to 35,400 Hz with soxr (as librosa)
    visual/<clip>/*.jpg               # 1-fps frames (or Image-01-FPS/<clip>/), or videos/<clip>.mp4
    train.csv, test.csv               # "clip,label" or OGM-GE's "clip,10,label" rows, no header
    classes.txt                       # only when the label column holds names (index = line number)

IGM skips clips with a missing wav or frame folder; ``prepare`` lists them as bad inputs (the sample set is
the same). Validation: 10 % of train, stratified, seed 0 (saved in the cache's ``splits.json``).
"""

from __future__ import annotations

from pathlib import Path

from benchmark.data import DatasetNotFoundError
from benchmark.registry import register_dataset

from ._av import AV_TRAIN_DEFAULTS, AVDataset

NUM_CLASSES = 31

HINT = (
    "Kinetics-Sounds is not distributed as a package: download the Kinetics-400 clips of its 31 classes "
    "(e.g. with the OGM-GE lists data/KineticSound/my_{train,test}.txt) and lay them out as IGM's KS.py reads "
    "them: RAW/annotations/{train,test}.csv (columns label, youtube_id), RAW/{train,test}_wav/<id>.wav and 1-fps "
    "frames in RAW/{train,test}_img/Image-01-FPS/<id>/."
)


def _igm_csv(root: Path, split: str) -> Path | None:
    """``annotations/<split>.csv`` when it has IGM's pandas header (a ``youtube_id`` column)."""
    path = root / "annotations" / f"{split}.csv"
    if path.exists():
        with path.open(encoding="utf-8-sig") as fh:
            if "youtube_id" in [h.strip() for h in fh.readline().split(",")]:
                return path
    return None


@register_dataset
class KineticsSounds(AVDataset):
    """Kinetics-Sounds (31 classes): audio log-spectrogram 257x1003 + 3 of the 1-fps frames."""

    name = "kinetics_sounds"
    classes = tuple(str(i) for i in range(NUM_CLASSES))
    sample_rate = 35400
    seconds = 10.0
    tile_repeats = None
    max_frames = 10
    min_frames = 4  # KS.py 35, 49: len(os.listdir(frame folder)) > 3
    download_hint = HINT
    train_defaults = {**AV_TRAIN_DEFAULTS, "data.frames": 3}  # IGM: 3 frames per clip

    @classmethod
    def audio_path(cls, root: Path, clip: str, split: str) -> Path:
        if (root / f"{split}_wav").is_dir():
            return root / f"{split}_wav" / f"{clip}.wav"
        return root / "audio" / f"{clip}.wav"

    @classmethod
    def frame_dir(cls, root: Path, clip: str, split: str) -> Path:
        for d in (root / f"{split}_img" / "Image-01-FPS", root / "visual", root / "Image-01-FPS"):
            if (d / clip).is_dir():
                return d / clip
        return root / "visual" / clip

    @classmethod
    def video_path(cls, root: Path, clip: str, split: str) -> Path | None:
        return root / "videos" / f"{clip}.mp4"

    @classmethod
    def split_rows(cls, root: Path) -> list[tuple[str, int | str, str]]:
        import pandas as pd

        rows: list[tuple[str, int | str, str]] = []
        for split in ("train", "test"):
            igm = _igm_csv(root, split)
            if igm is not None:
                table = pd.read_csv(igm, dtype={"youtube_id": str})
                if "label" not in table.columns:
                    raise ValueError(f"{igm}: no 'label' column (IGM's KS.py reads columns label, youtube_id)")
                rows += [(str(c), lab, split) for c, lab in zip(table["youtube_id"], table["label"].tolist())]
                continue
            candidates = (root / f"{split}.csv", root / f"my_{split}.txt", root / "annotations" / f"{split}.csv")
            path = next((p for p in candidates if p.exists()), None)
            if path is None:
                raise DatasetNotFoundError(f"split file annotations/{split}.csv not found in {root}. {HINT}")
            for line in path.read_text(encoding="utf-8-sig").splitlines():
                parts = [t.strip() for t in line.split(",")]
                if len(parts) < 2 or not parts[0]:
                    continue
                lab = parts[-1]
                rows.append((parts[0], int(lab) if lab.isdigit() else lab, split))
        return rows

    @classmethod
    def label_indices(cls, root: Path, train_labels: list[int | str]) -> dict[int | str, int]:
        if _igm_csv(root, "train") is not None:  # KS.py: class index = first appearance among the kept clips
            order = list(dict.fromkeys(train_labels))
            if len(order) > NUM_CLASSES:
                raise ValueError(f"{root}/annotations/train.csv has {len(order)} classes; expected <= {NUM_CLASSES}")
            return {lab: i for i, lab in enumerate(order)}
        names_file = root / "classes.txt"
        names = [x.strip() for x in names_file.read_text().splitlines() if x.strip()] if names_file.exists() else []
        index: dict[int | str, int] = {n: i for i, n in enumerate(names)}
        for lab in train_labels:
            if lab not in index and not (isinstance(lab, int) and 0 <= lab < NUM_CLASSES):
                raise ValueError(f"label {lab!r} of train.csv is neither an index < {NUM_CLASSES} nor in classes.txt")
        return index
