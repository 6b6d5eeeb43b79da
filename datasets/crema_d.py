"""CREMA-D (Cao et al. 2014): 7,442 acted clips of 91 actors, 6 emotions; audio + 1-fps frames.

Follows the OGM-GE / IGM loaders (baselines.md 1.3, mie_igm.md 10):

* audio: ``librosa.load(sr=22050)``, ``np.tile(x, 3)[:66150]``, clip to [-1, 1], STFT n_fft 512 / hop 353
  (Hann, centred), ``log(|S| + 1e-7)`` -> (1, 257, 188), no normalisation;
* visual: frames extracted at 1 fps (first frame of every second); ``data.frames`` (default 1) per clip, the
  first of the folder's ``os.listdir`` (``CREMA.py`` 84-90; ``data.frame_sampling=random`` for random frames);
  train RandomResizedCrop(224) + flip, test Resize((224, 224)), ImageNet mean/std;
* splits: the OGM-GE ``train.csv`` (6,698) / ``test.csv`` (744), ``clip,EMO`` rows; validation: 10 % of train,
  stratified, seed 0, saved in the cache's ``splits.json`` (the official code has none and selects on test).

Raw layout under ``data.root`` (the paths the official preprocessing writes)::

    AudioWAV/<clip>.wav
    Image-01-FPS/<clip>/*.jpg        # OGM-GE's video_preprocessing.py output, or instead:
    VideoFlash/<clip>.flv            # decoded at prepare time (first frame of every second)
    train.csv, test.csv              # or annotations/{train,test}.csv (IGM), from OGM-GE data/CREMAD/

Deliberate difference: frames are stored at 224x224 in the cache, so the training crop (its box drawn on the
original 480x360 frame, as the official code draws it) is cut from the 224x224 copy. Test frames are identical.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.data import DatasetNotFoundError
from benchmark.registry import register_dataset

from ._av import AV_TRAIN_DEFAULTS, AVDataset

LABELS = {"NEU": 0, "HAP": 1, "SAD": 2, "FEA": 3, "DIS": 4, "ANG": 5}  # the official hard-coded map

HINT = (
    "Download CREMA-D (https://github.com/CheyneyComputerScience/CREMA-D: AudioWAV/ and VideoFlash/) and the "
    "OGM-GE split files train.csv / test.csv (https://github.com/GeWu-Lab/OGM-GE_CVPR2022, data/CREMAD/) into "
    "one directory: RAW/AudioWAV, RAW/VideoFlash (or the extracted RAW/Image-01-FPS), RAW/train.csv, RAW/test.csv."
)


@register_dataset
class CremaD(AVDataset):
    """CREMA-D emotions: audio log-spectrogram 257x188 + 1-fps frames, 6 classes (OGM-GE split)."""

    name = "crema_d"
    classes = tuple(LABELS)
    sample_rate = 22050
    seconds = 3.0
    tile_repeats = 3
    max_frames = 10
    download_hint = HINT
    train_defaults = AV_TRAIN_DEFAULTS

    @classmethod
    def audio_path(cls, root: Path, clip: str, split: str) -> Path:
        return root / "AudioWAV" / f"{clip}.wav"

    @classmethod
    def frame_dir(cls, root: Path, clip: str, split: str) -> Path:
        return root / "Image-01-FPS" / clip

    @classmethod
    def video_path(cls, root: Path, clip: str, split: str) -> Path | None:
        return root / "VideoFlash" / f"{clip}.flv"

    @classmethod
    def split_rows(cls, root: Path) -> list[tuple[str, int | str, str]]:
        rows = []
        for split in ("train", "test"):
            path = next((p for p in (root / f"{split}.csv", root / "annotations" / f"{split}.csv") if p.exists()), None)
            if path is None:
                raise DatasetNotFoundError(f"split file {split}.csv not found in {root} or {root}/annotations. {HINT}")
            for line in path.read_text(encoding="utf-8-sig").splitlines():
                line = line.strip()
                if not line:
                    continue
                clip, emo = (t.strip() for t in line.split(",")[:2])
                if emo not in LABELS:
                    raise ValueError(f"{path}: unknown emotion {emo!r} in row {line!r} (expected {sorted(LABELS)})")
                rows.append((clip, LABELS[emo], split))
        return rows
