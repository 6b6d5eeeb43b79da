"""CREMA-D end to end on a generated raw release: features vs librosa, prepare (bad inputs, resume), loading, a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.config import build_config
from benchmark.data import DatasetNotFoundError
from benchmark.synthetic_release import make_crema_d, tone, write_wav16
from mmbalance_datasets import _packed
from mmbalance_datasets._audio import log_stft
from mmbalance_datasets._transforms import frames_to_tensor
from mmbalance_datasets.crema_d import CremaD
from tests.fake_releases import tree_digest


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("crema")
    clips = make_crema_d(base / "raw")
    digest = tree_digest(base / "raw")
    summary = CremaD.prepare(str(base / "raw"), str(base / "cache"), progress=False)
    return base, clips, digest, summary


def _librosa_features(path, seconds=3.0):
    librosa = pytest.importorskip("librosa")
    x, _ = librosa.load(path, sr=22050)
    x = np.clip(np.tile(x, 3)[: int(22050 * seconds)], -1, 1)
    return np.log(np.abs(librosa.stft(x, n_fft=512, hop_length=353)) + 1e-7)


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_log_stft_equals_librosa(pad_mode):
    import librosa

    x = tone(22050, 3.0, 440.0, seed=1)
    ref = np.log(np.abs(librosa.stft(x, n_fft=512, hop_length=353, pad_mode=pad_mode)) + 1e-7)
    ours = log_stft(x, 512, 353, pad_mode)
    assert ours.shape == ref.shape == (257, 188)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_crema_features_equal_official_pipeline(tmp_path):
    # a 16 kHz wav of 1.3 s: resampled to 22,050 Hz, tiled x3, cut to 3 s -> (257, 188), like librosa.load + tile
    path = tmp_path / "a.wav"
    write_wav16(path, tone(16000, 1.3, 300.0, seed=2), 16000)
    ours = CremaD.audio_features(path)
    ref = _librosa_features(str(path))
    assert ours.shape == ref.shape == (257, 188)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_prepare_lists_bad_inputs_and_leaves_raw_alone(prepared):
    base, clips, digest, summary = prepared
    assert summary["done"] == len(clips) - 1
    assert list(summary["bad"]) == [clips[-1]]  # the truncated wav
    assert tree_digest(base / "raw") == digest
    bad = json.loads((base / "cache" / "bad.json").read_text())
    assert list(bad) == [clips[-1]]
    splits = json.loads((base / "cache" / "splits.json").read_text())
    assert splits["val_carved_from_train"] and splits["val"] and clips[-1] not in splits["train"]
    assert not set(splits["val"]) & set(splits["train"])
    assert len(splits["test"]) == 6
    audio = np.load(base / "cache" / "audio.npy", mmap_mode="r")
    frames = np.load(base / "cache" / "frames.npy", mmap_mode="r")
    assert audio.dtype == np.float16 and audio.shape[1:] == (257, 188)
    assert frames.dtype == np.uint8 and frames.shape[1:] == (224, 224, 3)
    manifest = json.loads((base / "cache" / "manifest.json").read_text())
    video_clip = manifest["samples"][1]
    assert video_clip["count"] == 2  # the 2-second flv: first frame of each second


def test_prepare_resumes_after_interruption(tmp_path, prepared, monkeypatch):
    base = prepared[0]
    real = CremaD.decode
    calls = {"n": 0}

    def flaky(s, pad_mode="constant"):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(s, pad_mode)

    monkeypatch.setattr(CremaD, "decode", classmethod(lambda cls, s, pad_mode="constant": flaky(s, pad_mode)))
    with pytest.raises(KeyboardInterrupt):
        CremaD.prepare(str(base / "raw"), str(tmp_path / "cache"), progress=False)
    status = np.load(tmp_path / "cache" / "status.npy")
    assert (status == _packed.DONE).sum() == 4
    monkeypatch.setattr(CremaD, "decode", classmethod(lambda cls, s, pad_mode="constant": real(s, pad_mode)))
    calls["n"] = 0
    summary = CremaD.prepare(str(base / "raw"), str(tmp_path / "cache"), progress=False)
    assert summary["done"] == prepared[3]["done"]
    np.testing.assert_array_equal(np.load(tmp_path / "cache" / "audio.npy"), np.load(base / "cache" / "audio.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "cache" / "frames.npy"), np.load(base / "cache" / "frames.npy"))
    # a different parameter set is refused rather than mixed into the same cache
    with pytest.raises(_packed.CacheMismatchError):
        CremaD.prepare(str(base / "raw"), str(tmp_path / "cache"), progress=False, pad_mode="reflect")


def _dataset(base, **data):
    cfg = build_config(
        "joint", "crema_d", 0, {"data.root": str(base / "raw"), "data.cache": str(base / "cache"), **data}
    )
    return CremaD(cfg.data_cfg)


def test_batches_have_official_shapes(prepared):
    ds = _dataset(prepared[0], **{"data.frames": 2})
    train, test = ds.split("train"), ds.split("test")
    item = train[0]
    assert item["audio"].shape == (1, 257, 188) and item["audio"].dtype == torch.float32
    assert item["visual"].shape == (3, 2, 224, 224)
    assert ds.info.num_classes == 6 and ds.info.modalities == ("audio", "visual")
    # evaluation is deterministic, training draws random crops
    torch.testing.assert_close(test[0]["visual"], test[0]["visual"])
    assert not torch.equal(train[0]["visual"], train[0]["visual"])


def test_official_frame_sampling_takes_first_listdir_frame(prepared):
    base = prepared[0]
    ds = _dataset(base, **{"data.frame_sampling": "official"})
    cache = ds._cache()
    row = int(ds.split("test").rows[0])
    first = cache.samples[row]["listdir"][0]
    expected = frames_to_tensor(cache.items("frames", row)[[first]], 224, False)
    torch.testing.assert_close(ds.split("test")[0]["visual"], expected)


def test_missing_root_and_cache_say_what_to_download(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="CREMA-D"):
        CremaD.prepare(str(tmp_path / "nope"), str(tmp_path / "cache"), progress=False)
    cfg = build_config("joint", "crema_d", 0, {"data.cache": str(tmp_path / "nocache")})
    with pytest.raises(DatasetNotFoundError, match="python -m datasets prepare crema_d"):
        CremaD(cfg.data_cfg).split("train")


@pytest.mark.slow
def test_one_epoch_trains_on_the_cache(prepared):
    from benchmark.trainer import fit

    base = prepared[0]
    cfg = build_config(
        "joint",
        "crema_d",
        0,
        {
            "data.root": str(base / "raw"),
            "data.cache": str(base / "cache"),
            # 64 px, not 32: at 32 px layer4 sees 1x1 maps, so the last batch of 2 clips (1 frame each) gives
            # BatchNorm two values per channel, the gradient explodes and evaluation returns NaN logits
            "data.image_size": 64,
            "model.resnet_width": 8,
            "train.epochs": 1,
            "train.batch_size": 4,
            "train.checkpoint": False,
            "train.device": "cpu",
        },
    )
    row = fit(cfg, None, progress=False)
    assert 0.0 <= row["test_acc[last]"] <= 1.0 and np.isfinite(row["test_map[last]"])


@pytest.mark.slow
def test_loader_benchmark_compares_cache_with_raw(prepared):
    from benchmark.bench_data import bench_dataset

    base = prepared[0]
    row = bench_dataset("crema_d", str(base / "raw"), str(base / "cache"), limit=6, split="test")
    assert row["samples"] == 6 and row["cached_sps"] > 0 and row["raw_sps"] > 0
    assert row["speedup"] > 1.0  # decoding wav + resampling + STFT + JPEG per sample costs more than a memmap read
