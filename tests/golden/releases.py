"""The tiny raw releases behind the dataset golden fixtures (``data_<name>.npz``), in IGM's layouts.

The generator (``scripts/golden/data_pipelines.py``) builds each release, runs IGM's dataset class on it and stores
what it returns; the test (``tests/test_golden_datasets.py``) builds the same release again, checks that its
decoded content has the digest the fixture recorded, prepares it with ``python -m datasets prepare`` defaults
and compares. Frames are PNG and videos FFV1 (lossless), the content integer arithmetic (``datasets/_fixtures``).

Frame sizes mix the two cases of the training crop: originals of the stored size (the crop is then cut from the
same pixels as IGM's, so the results must be equal) and originals of other sizes (the crop box is the same, the
pixels are resampled from the stored copy: the difference left, measured).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mmbalance_datasets._fixtures import (
    make_crema_d,
    make_kinetics_sounds,
    make_nvgesture,
    make_sarcasm,
    make_twitter2015,
)

IMAGE_RES = 32  # IGM's config["image_res"] for the image-text fixtures (and the suite's data.image_size)


def _crema(root: Path) -> None:
    # clips in order: train 224x224, test 64x48, train 64x48, test 224x224
    make_crema_d(
        root,
        per_class=1,
        codes=("NEU", "HAP"),
        with_video=False,
        with_bad=False,
        frame_size=[(224, 224), (64, 48), (64, 48), (224, 224)],
        layout="igm",
        image_ext=".png",
        seconds=1.1,  # >= 1 s: IGM tiles x3 and cuts 3 s, shorter clips give shorter spectrograms
    )


def _ks(root: Path) -> None:
    # clips in order: train 224x224, test 72x56, train 72x56, test 224x224; plus the 3-frame and the wav-less clip
    make_kinetics_sounds(
        root,
        classes=2,
        per_class=1,
        layout="igm",
        frame_size=[(224, 224), (72, 56), (72, 56), (224, 224)],
        image_ext=".png",
        seconds=0.5,
    )


def _twitter(root: Path) -> None:
    sizes = [(IMAGE_RES, IMAGE_RES), (40, 30), (IMAGE_RES, IMAGE_RES), (24, 36)]
    make_twitter2015(root, per_class=2, layout="igm", image_size=sizes, image_ext=".png")


def _sarcasm(root: Path) -> None:
    sizes = [(IMAGE_RES, IMAGE_RES), (40, 30), (IMAGE_RES, IMAGE_RES), (24, 36)]
    make_sarcasm(root, per_class=3, layout="igm", image_size=sizes, image_ext=".png")


def _nvgesture(root: Path) -> None:
    # 20-frame videos (gestures 2:18, 16 frames), flow (H, W, 2, T) of 40x48 pixels and 6 frames
    make_nvgesture(
        root,
        per_class=1,
        classes=2,
        frames=20,
        layout="igm",
        codec="ffv1",
        flow_size=(48, 40),
        flow_frames=6,
        with_bad=False,
    )


RELEASES: dict[str, Callable[[Path], None]] = {
    "crema_d": _crema,
    "kinetics_sounds": _ks,
    "twitter2015": _twitter,
    "sarcasm": _sarcasm,
    "nvgesture": _nvgesture,
}
