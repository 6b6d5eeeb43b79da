"""NVGesture on a generated raw release (avi + flow npy): prepare, clip sampling, one epoch; the I3D backbone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.backbones.clip import PretrainedWeightsMissing
from benchmark.backbones.i3d import I3D, load_i3d
from benchmark.config import build_config
from mmbalance_datasets.nvgesture import NVGesture
from tests.fake_releases import make_nvgesture, tree_digest


@pytest.mark.slow
def test_prepare_clips_and_one_epoch(tmp_path):
    from benchmark.trainer import fit

    make_nvgesture(tmp_path / "raw")
    digest = tree_digest(tmp_path / "raw")
    # 16-frame gestures evenly resampled to an 8-frame window (the suite's earlier window; IGM's is zero-filled)
    summary = NVGesture.prepare(
        str(tmp_path / "raw"), str(tmp_path / "cache"), False, store_size=16, window=8, window_fill="resample"
    )
    assert tree_digest(tmp_path / "raw") == digest
    assert summary["done"] == 8 and list(summary["bad"]) == ["train/4"]  # the gesture without flow
    splits = json.loads((tmp_path / "cache" / "splits.json").read_text())
    assert len(splits["test"]) == 3 and splits["val_carved_from_train"]
    overrides = {
        "data.root": str(tmp_path / "raw"),
        "data.cache": str(tmp_path / "cache"),
        "data.clip_frames": 4,
        "data.crop": 12,
        "model.backbones": {m: "resnet18_visual" for m in ("rgb", "depth", "flow")},
        "model.resnet_width": 8,
        "train.epochs": 1,
        "train.batch_size": 2,
        "train.eval_batch_size": 2,
        "train.checkpoint": False,
        "train.device": "cpu",
    }
    cfg = build_config("joint", "nvgesture", 0, overrides)
    ds = NVGesture(cfg.data_cfg)
    tr, te = ds.split("train")[0], ds.split("test")[0]
    assert tr["rgb"].shape == (3, 4, 12, 12) and tr["depth"].shape == (1, 4, 12, 12)
    assert tr["flow"].shape == (2, 16, 12, 12)  # IGM trains on every flow frame
    assert te["rgb"].shape == (3, 8, 12, 12) and te["flow"].shape == (2, 16, 12, 12)
    torch.testing.assert_close(ds.split("test")[0]["flow"], te["flow"])  # centre crop, whole window
    assert float(te["depth"].min()) >= 0.0 and float(te["depth"].max()) <= 1.0
    # the options: the RGB channel order corrected, the flow cut to the training clip
    cut = NVGesture(build_config("joint", "nvgesture", 0, {**overrides, "data.flow_frames": "window"}).data_cfg)
    assert cut.split("train")[0]["flow"].shape == (2, 4, 12, 12)
    rgb = NVGesture(build_config("joint", "nvgesture", 0, {**overrides, "data.channel_order": "rgb"}).data_cfg)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    pixels = {
        k: d.split("test")[0]["rgb"] * std.view(3, 1, 1, 1) + mean.view(3, 1, 1, 1) for k, d in (("b", ds), ("r", rgb))
    }
    torch.testing.assert_close(pixels["b"], pixels["r"].flip(0))  # BGR by default (OpenCV's order)
    assert not torch.allclose(pixels["b"], pixels["r"])
    row = fit(cfg, None, progress=False)
    assert np.isfinite(row["test_macro_f1[last]"])


def test_i3d_loads_pytorch_i3d_state_dicts(tmp_path, monkeypatch):
    monkeypatch.setenv("MMB_I3D_DIR", str(tmp_path))
    with pytest.raises(PretrainedWeightsMissing, match="rgb_imagenet.pt"):
        load_i3d(3)
    ref = I3D(3)
    state = dict(ref.state_dict())
    state["logits.conv3d.weight"] = torch.zeros(400, 1024, 1, 1, 1)  # the Kinetics classifier is dropped
    torch.save(state, tmp_path / "rgb_imagenet.pt")
    rgb = load_i3d(3)
    torch.testing.assert_close(rgb.Mixed_5c.b1b.conv3d.weight, ref.Mixed_5c.b1b.conv3d.weight)
    depth = load_i3d(1)  # depth: the rest from the RGB file, a fresh 1-channel first convolution
    assert depth.Conv3d_1a_7x7.conv3d.weight.shape == (64, 1, 7, 7, 7)
    torch.testing.assert_close(depth.Mixed_4b.b0.bn.running_var, ref.Mixed_4b.b0.bn.running_var)
    depth.eval()
    with torch.no_grad():
        assert depth(torch.randn(1, 1, 8, 32, 32)).shape == (1, 1024)
