"""Kinetics-Sounds on a generated release: IGM 35.4 kHz / 10-s features vs librosa, prepare, batches, one epoch."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.config import build_config
from benchmark.synthetic_release import tone, write_wav16
from mmbalance_datasets.kinetics_sounds import KineticsSounds
from tests.fake_releases import make_kinetics_sounds


def test_features_equal_igm_pipeline(tmp_path):
    librosa = pytest.importorskip("librosa")
    path = tmp_path / "a.wav"
    write_wav16(path, tone(16000, 3.0, 500.0, seed=3), 16000)
    x, _ = librosa.load(str(path), sr=35400)
    x = np.clip(np.tile(x, int(np.ceil(354000 / len(x))))[:354000], -1, 1)  # tile until >= 10 s, keep 10 s
    ref = np.log(np.abs(librosa.stft(x, n_fft=512, hop_length=353)) + 1e-7)
    ours = KineticsSounds.audio_features(path)
    assert ours.shape == ref.shape == (257, 1003)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


@pytest.mark.slow
def test_prepare_batches_and_one_epoch(tmp_path):
    from benchmark.trainer import fit

    make_kinetics_sounds(tmp_path / "raw")
    summary = KineticsSounds.prepare(str(tmp_path / "raw"), str(tmp_path / "cache"), progress=False)
    assert summary["done"] == 9 and not summary["bad"]
    overrides = {
        "data.root": str(tmp_path / "raw"),
        "data.cache": str(tmp_path / "cache"),
        "data.image_size": 32,
        "model.resnet_width": 8,
        "train.epochs": 1,
        "train.batch_size": 3,
        "train.checkpoint": False,
        "train.device": "cpu",
    }
    cfg = build_config("joint", "kinetics_sounds", 0, overrides)
    assert cfg.data_cfg.frames == 3
    ds = KineticsSounds(cfg.data_cfg)
    item = ds.split("train")[0]
    assert item["audio"].shape == (1, 257, 1003) and item["visual"].shape == (3, 3, 32, 32)
    assert ds.info.num_classes == 31
    row = fit(cfg, None, progress=False)
    assert 0.0 <= row["test_acc[last]"] <= 1.0
