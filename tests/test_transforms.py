"""The frame normalisation by table lookup gives exactly the float32 arithmetic it replaced (issue #14)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import benchmark  # noqa: F401  (installs mmbalance_datasets)
from mmbalance_datasets._imagetext import CLIP_MEAN, CLIP_STD
from mmbalance_datasets._transforms import IMAGENET_MEAN, IMAGENET_STD, frames_to_tensor, normalize


def _arithmetic(frames: np.ndarray, mean, std) -> torch.Tensor:
    """``ToTensor`` then ``Normalize`` as four float32 tensor ops (the former code of ``normalize``)."""
    x = torch.from_numpy(np.array(frames)).movedim(-1, -3).float().div_(255.0)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


@pytest.mark.parametrize(
    ("mean", "std"), [(IMAGENET_MEAN, IMAGENET_STD), (CLIP_MEAN, CLIP_STD), ((0.5,) * 3, (0.5,) * 3)]
)
@pytest.mark.parametrize("shape", [(256, 3, 3), (2, 17, 53, 3), (5, 1, 256, 3)])
def test_table_lookup_equals_the_tensor_arithmetic_for_every_uint8_value(mean, std, shape):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, shape, dtype=np.uint8)
    flat = frames.reshape(-1, 3)
    flat[:256] = np.arange(256, dtype=np.uint8)[:, None]  # every value in every channel, at odd offsets too
    frames = flat.reshape(shape)
    got, want = normalize(frames, mean, std), _arithmetic(frames, mean, std)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert torch.equal(got, want)
    flipped = frames[..., ::-1, :]  # a strided view, as the loader's horizontal flip gives
    assert torch.equal(normalize(flipped, mean, std), _arithmetic(flipped, mean, std))


def test_float_frames_keep_the_arithmetic_path():
    frames = np.random.default_rng(1).random((2, 4, 4, 3)).astype(np.float32) * 255
    assert torch.equal(normalize(frames, IMAGENET_MEAN, IMAGENET_STD), _arithmetic(frames, IMAGENET_MEAN, IMAGENET_STD))


@pytest.mark.parametrize("train", [False, True])
def test_frames_to_tensor_is_the_normalised_clip_channels_first(train):
    frames = np.random.default_rng(2).integers(0, 256, (3, 40, 30, 3), dtype=np.uint8)
    torch.manual_seed(0)
    trace: list = []
    got = frames_to_tensor(frames, 32, train=train, trace=trace)
    assert got.shape == (3, 3, 32, 32) and got.is_contiguous()
    # the same crops and flips (replayed from the same seed) through the former normalisation
    torch.manual_seed(0)
    from mmbalance_datasets._transforms import random_resized_crop_box, resized_crop

    outs = []
    for f in frames:
        if train:
            box = random_resized_crop_box(30, 40, (0.08, 1.0))
            f = resized_crop(f, box, (30, 40), 32, "bilinear")
            if torch.rand(1).item() < 0.5:
                f = f[:, ::-1]
        else:
            from torchvision.transforms.v2 import functional as TF

            f = (
                TF.resize(torch.from_numpy(np.array(f)).permute(2, 0, 1), [32, 32], antialias=True)
                .permute(1, 2, 0)
                .numpy()
            )
        outs.append(np.ascontiguousarray(f))
    want = _arithmetic(np.stack(outs), IMAGENET_MEAN, IMAGENET_STD).permute(1, 0, 2, 3)
    assert torch.equal(got, want)


def test_normalisation_ab_times_both_paths_and_restores_the_table_lookup(tmp_path):
    import mmbalance_datasets._transforms as transforms
    from benchmark.bench_data import _former_normalised_channels, normalisation_ab

    frames = np.random.default_rng(3).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    assert np.array_equal(
        _former_normalised_channels(frames, IMAGENET_MEAN, IMAGENET_STD),
        transforms._normalized_channels(frames, IMAGENET_MEAN, IMAGENET_STD),
    )
    before = transforms._normalized_channels
    r = normalisation_ab(rounds=2, per_class=1, workdir=str(tmp_path))
    assert transforms._normalized_channels is before
    assert len(r["before"]) == len(r["now"]) == 2 and r["items"] > 0
    assert all(v > 0 for v in r["before"] + r["now"])
    assert r["now_workers_for_3000"] == int(np.ceil(3000 / r["now_median"]))
