"""ResNet18 encoders trained from scratch, as in the OGM-GE lineage (``models/backbone.py`` of OGM-GE).

The network itself is timm's ``resnet18`` (BasicBlock, layers [2, 2, 2, 2], 7x7 stem, max-pool) without its
classifier; ``model.resnet_width`` scales every channel count, the stem included, so a narrow network keeps
the standard topology (64, the default, is the standard network). ``zero_init_last=False`` keeps the plain
Kaiming/BN(1, 0) initialisation of the official code.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from benchmark.config import ModelConfig
from benchmark.registry import register_backbone


def _resnet18_trunk(in_chans: int, width: int) -> nn.Module:
    trunk = timm.create_model(
        "resnet18",
        pretrained=False,
        num_classes=0,
        global_pool="",
        in_chans=in_chans,
        channels=(width, 2 * width, 4 * width, 8 * width),
        zero_init_last=False,
    )
    if width != STEM_WIDTH:
        _narrow_stem_(trunk, in_chans, width)
    return trunk


STEM_WIDTH = 64  # timm's plain 7x7 stem always has 64 channels


def _narrow_stem_(trunk: nn.Module, in_chans: int, width: int) -> None:
    """Give a narrow trunk a stem of ``width`` channels, as the standard topology scaled down would have.

    timm keeps a 64-channel stem whatever ``channels`` says, which makes ``layer1.0`` take 64 channels in and
    adds a projection shortcut there; the stem and that block are rebuilt here (same initialisation as timm:
    Kaiming normal fan-out, BatchNorm 1/0), so that ``layer1.0`` is an identity-shortcut block again.
    """
    trunk.conv1 = nn.Conv2d(in_chans, width, kernel_size=7, stride=2, padding=3, bias=False)
    trunk.bn1 = nn.BatchNorm2d(width)
    block = trunk.layer1[0]
    block.conv1 = nn.Conv2d(width, width, kernel_size=3, stride=1, padding=1, bias=False)
    block.downsample = None
    for conv in (trunk.conv1, block.conv1):
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")


class SpectrogramResNet18(nn.Module):
    """Audio encoder: (B, F, T) or (B, C, F, T) spectrogram -> 2-D ResNet18 -> global average pool -> 8*width (512)."""

    # The released ResNet18, trained from scratch: the OGM-GE lineage's weight_init re-initialises it
    # (benchmark.models.apply_official_init).
    official_init = True

    def __init__(self, in_chans: int = 1, width: int = 64) -> None:
        super().__init__()
        self.trunk = _resnet18_trunk(in_chans, width)
        self.out_dim = 8 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        fmap = self.trunk.forward_features(x.to(self.trunk.conv1.weight.dtype))
        return fmap.mean(dim=(2, 3))


class FramesResNet18(nn.Module):
    """Visual encoder: (B, C, T, H, W) frames -> per-frame 2-D ResNet18 -> 3-D global average pool -> 8*width (512).

    Follows OGM-GE's ``AVClassifier``: every frame passes through the same 2-D network and the feature maps
    are averaged over time and space (``adaptive_avg_pool3d(., 1)``); there is no temporal modelling.
    A 4-D input (B, C, H, W) is treated as a single frame.
    """

    official_init = True  # as SpectrogramResNet18

    def __init__(self, in_chans: int = 3, width: int = 64) -> None:
        super().__init__()
        self.trunk = _resnet18_trunk(in_chans, width)
        self.out_dim = 8 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.unsqueeze(2)
        b, c, t, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w).to(self.trunk.conv1.weight.dtype)
        fmap = self.trunk.forward_features(frames)  # (B*T, 512, h', w')
        fmap = fmap.reshape(b, t, *fmap.shape[1:])
        return fmap.mean(dim=(1, 3, 4))


@register_backbone("resnet18_audio")
def resnet18_audio(model_cfg: ModelConfig, in_chans: int = 1, **_: object) -> nn.Module:
    """ResNet18 from scratch on a 1-channel spectrogram (OGM-GE audio branch)."""
    return SpectrogramResNet18(in_chans=in_chans, width=model_cfg.resnet_width)


@register_backbone("resnet18_visual")
def resnet18_visual(model_cfg: ModelConfig, in_chans: int = 3, **_: object) -> nn.Module:
    """ResNet18 from scratch on T frames, pooled over time and space (OGM-GE visual branch)."""
    return FramesResNet18(in_chans=in_chans, width=model_cfg.resnet_width)
