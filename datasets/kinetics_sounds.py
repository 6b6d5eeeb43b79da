"""Kinetics-Sounds: 31 Kinetics-400 classes where the sound matters; 10-s YouTube clips, audio + 1-fps frames.

Follows IGM's ``datasets/KS.py`` (mie_igm.md 10): ``librosa.load(sr=35400)``, tile until >= 10 s, keep the first
10 s, clip to [-1, 1], STFT n_fft 512 / hop 353 (Hann, centred), ``log(|S| + 1e-7)`` -> (1, 257, 1003); 1-fps
frames, 3 per clip (``data.frames``); same image transforms as CREMA-D. There is no canonical class list
(groups use 31-34 classes): labels are the integer indices of the split files, or names mapped through
``classes.txt`` (one name a line, index = line number) when the files hold names.

Raw layout under ``data.root``::

    audio/<clip>.wav                  # 16 kHz or any rate; resampled to 35,400 Hz with soxr (as librosa)
    visual/<clip>/*.jpg               # 1-fps frames (or Image-01-FPS/<clip>/), or videos/<clip>.mp4
    train.csv, test.csv               # "clip,label" or OGM-GE's "clip,10,label" rows
    classes.txt                       # only when the label column holds names

Validation: 10 % of train, stratified, seed 0 (saved in the cache's ``splits.json``).
"""

from __future__ import annotations

from pathlib import Path

from benchmark.data import DatasetNotFoundError
from benchmark.registry import register_dataset
from datasets._av import AV_TRAIN_DEFAULTS, AVDataset

NUM_CLASSES = 31

HINT = (
    "Kinetics-Sounds is not distributed as a package: download the Kinetics-400 clips of its 31 classes "
    "(e.g. with the OGM-GE lists data/KineticSound/my_{train,test}.txt), extract the audio as wav into RAW/audio/ "
    "and 1-fps frames into RAW/visual/<clip>/, and put train.csv / test.csv in RAW."
)


@register_dataset
class KineticsSounds(AVDataset):
    """Kinetics-Sounds (31 classes): audio log-spectrogram 257x1003 + 3 of the 1-fps frames."""

    name = "kinetics_sounds"
    classes = tuple(str(i) for i in range(NUM_CLASSES))
    sample_rate = 35400
    seconds = 10.0
    tile_repeats = None
    max_frames = 10
    download_hint = HINT
    train_defaults = {**AV_TRAIN_DEFAULTS, "data.frames": 3}  # IGM: 3 frames per clip

    @classmethod
    def audio_path(cls, root: Path, clip: str) -> Path:
        return root / "audio" / f"{clip}.wav"

    @classmethod
    def frame_dir(cls, root: Path, clip: str) -> Path:
        for d in ("visual", "Image-01-FPS"):
            if (root / d / clip).is_dir():
                return root / d / clip
        return root / "visual" / clip

    @classmethod
    def video_path(cls, root: Path, clip: str) -> Path | None:
        return root / "videos" / f"{clip}.mp4"

    @classmethod
    def split_rows(cls, root: Path) -> list[tuple[str, int, str]]:
        names_file = root / "classes.txt"
        names = [x.strip() for x in names_file.read_text().splitlines() if x.strip()] if names_file.exists() else []
        index = {n: i for i, n in enumerate(names)}
        rows = []
        for split in ("train", "test"):
            candidates = (root / f"{split}.csv", root / f"my_{split}.txt", root / "annotations" / f"{split}.csv")
            path = next((p for p in candidates if p.exists()), None)
            if path is None:
                raise DatasetNotFoundError(f"split file {split}.csv not found in {root}. {HINT}")
            for line in path.read_text(encoding="utf-8-sig").splitlines():
                parts = [t.strip() for t in line.split(",")]
                if len(parts) < 2 or not parts[0]:
                    continue
                clip, lab = parts[0], parts[-1]
                label = index[lab] if lab in index else int(lab) if lab.isdigit() else None
                if label is None or not 0 <= label < NUM_CLASSES:
                    raise ValueError(f"{path}: label {lab!r} is neither an index < {NUM_CLASSES} nor in classes.txt")
                rows.append((clip, label, split))
        return rows
