"""Image and frame transforms: reading an image, torchvision's crop draws, resized crops, normalisation, frame
sampling, and :func:`frames_to_tensor` (a clip's frames to the encoder's input)."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PIL_RESAMPLE = {"bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling.BILINEAR / BICUBIC


def load_image(path: str | os.PathLike, size: int, resample: str = "bilinear") -> tuple[np.ndarray, tuple[int, int]]:
    """An image file as uint8 (size, size, 3) and its original (width, height).

    Resized like torchvision's ``Resize((size, size))`` on a PIL image (PIL ``resize``, aspect not kept) with
    ``resample`` "bilinear" (the audio-visual loaders' default) or "bicubic" (IGM's image-text test transform).
    """
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        original = im.size
        if im.size != (size, size):
            im = im.resize((size, size), PIL_RESAMPLE[resample])
        return np.asarray(im, dtype=np.uint8), original


def read_image(path: str | os.PathLike, size: int, resample: str = "bilinear") -> np.ndarray:
    """:func:`load_image` without the original size."""
    return load_image(path, size, resample)[0]


def random_resized_crop_box(
    width: int, height: int, scale: Sequence[float], ratio: Sequence[float] = (3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params`` for an image of (width, height): (top, left, h, w).

    Same draws from torch's global generator as the official loaders make on the original image, so one seed
    gives one box whatever size the cached copy has.
    """
    from torchvision.transforms import RandomResizedCrop

    shape_only = torch.empty(1, 1, 1).expand(1, height, width)  # get_params reads only the shape
    return tuple(RandomResizedCrop.get_params(shape_only, list(scale), list(ratio)))


def resized_crop(
    img: np.ndarray, box: Sequence[int], source_size: Sequence[int] | None, size: int, resample: str
) -> np.ndarray:
    """Crop ``box`` = (top, left, h, w), given on the original image of ``source_size`` = (W, H), out of the
    stored copy ``img`` (uint8 HxWx3) and resize it to (size, size) with PIL.

    When the copy has the original's size this is exactly torchvision's ``resized_crop`` on a PIL image (crop,
    then resize). Otherwise the box is mapped onto the copy (fractional coordinates) and PIL resamples that
    region: the same part of the picture, resampled from the copy instead of the original.
    """
    from PIL import Image

    top, left, h, w = (int(v) for v in box)
    pil = Image.fromarray(np.ascontiguousarray(img))
    width, height = (int(source_size[0]), int(source_size[1])) if source_size is not None else pil.size
    if (width, height) == pil.size:
        out = pil.crop((left, top, left + w, top + h)).resize((size, size), PIL_RESAMPLE[resample])
    else:
        sx, sy = pil.size[0] / width, pil.size[1] / height
        region = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
        out = pil.resize((size, size), PIL_RESAMPLE[resample], box=region)
    return np.asarray(out, dtype=np.uint8)


def normalize(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W): ``ToTensor`` (x / 255) then ``Normalize(mean, std)``."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return torch.from_numpy(np.moveaxis(_normalized_channels(frames, mean, std), 0, -3))
    return normalize_arithmetic(frames, mean, std)


def normalize_arithmetic(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """:func:`normalize` as four float32 tensor ops (to float, / 255, - mean, / std): the path of non-uint8
    frames, and what the lookup table of uint8 ones reproduces (``benchmark.bench_data --ab`` times both)."""
    x = torch.from_numpy(np.array(frames)).movedim(-1, -3).float().div_(255.0)
    shape = (3, 1, 1)
    return (x - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)


@functools.lru_cache(maxsize=16)
def _normalize_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: every uint8 value of every channel through the float32 ops of :func:`normalize`."""
    x = torch.arange(256, dtype=torch.uint8).float().div_(255.0).view(1, 256)
    return ((x - torch.tensor(mean).view(3, 1)) / torch.tensor(std).view(3, 1)).numpy()


def _normalized_channels(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (..., H, W, 3) -> float32 (3, ..., H, W) by table lookup: the same values as ``x / 255`` then
    ``(x - mean) / std`` in float32 (each is a correctly rounded op of one value, so a table of the 256 inputs
    holds exactly what the tensor arithmetic gives), in one pass instead of four (a loader worker's largest cost)."""
    table = _normalize_table(tuple(float(m) for m in mean), tuple(float(s) for s in std))
    out = np.empty((3, *frames.shape[:-1]), dtype=np.float32)
    for c in range(3):
        np.take(table[c], frames[..., c], out=out[c])
    return out


def segment_indices(n: int, k: int, train: bool, generator: torch.Generator | None = None) -> list[int]:
    """``k`` frame indices out of ``n``: one per equal segment, random in it for training, its centre otherwise.

    With fewer frames than segments the indices repeat (every clip yields exactly ``k`` frames).
    """
    if n <= 0:
        raise ValueError("clip without frames")
    out = []
    for j in range(k):
        lo = (j * n) // k
        hi = max(((j + 1) * n) // k, lo + 1)
        if train:
            pick = lo + int(torch.randint(hi - lo, (1,), generator=generator))
        else:
            pick = (lo + hi - 1) // 2
        out.append(min(pick, n - 1))
    return out


def frames_to_tensor(
    frames: np.ndarray,
    size: int,
    train: bool,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale: tuple[float, float] = (0.08, 1.0),
    flip: bool = True,
    source_size: Sequence[int] | None = None,
    trace: list[Any] | None = None,
) -> torch.Tensor:
    """uint8 (T, H, W, 3) frames -> normalised float (3, T, size, size).

    Train: per frame, as the official loaders, ``RandomResizedCrop(size, scale)`` (bilinear) then a horizontal
    flip with probability 0.5; the box is drawn on the original frame of ``source_size`` = (W, H) (the
    stored frame when unknown) and cut from the stored copy (:func:`resized_crop`). Otherwise a plain resize to
    (size, size) when the stored frame has another size. Draws use torch's global generator (seeded and
    checkpointed by the trainer), in the official order: crop, flip, next frame. ``trace`` receives each
    training frame's (box, flipped).
    """
    from torchvision.transforms.v2 import functional as TF

    frames = np.asarray(frames)
    if source_size is None:
        source_size = (frames.shape[2], frames.shape[1])
    width, height = int(source_size[0]), int(source_size[1])
    outs = []
    for f in frames:
        if train:
            box = random_resized_crop_box(width, height, scale)
            f = resized_crop(f, box, (width, height), size, "bilinear")
            flipped = bool(flip and torch.rand(1).item() < 0.5)
            if flipped:
                f = f[:, ::-1]
            if trace is not None:
                trace.append((box, flipped))
        elif f.shape[0] != size or f.shape[1] != size:
            t = TF.resize(torch.from_numpy(np.array(f)).permute(2, 0, 1), [size, size], antialias=True)
            f = t.permute(1, 2, 0).numpy()
        outs.append(f)
    stacked = np.stack(outs)  # (T, size, size, 3)
    if stacked.dtype == np.uint8:
        return torch.from_numpy(_normalized_channels(stacked, mean, std))  # (3, T, size, size)
    return normalize(stacked, mean, std).permute(1, 0, 2, 3).contiguous()
