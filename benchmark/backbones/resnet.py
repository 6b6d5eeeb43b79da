"""ResNet18 encoders trained from scratch, as in the OGM-GE lineage (``models/backbone.py`` of OGM-GE).

The network itself is timm's ``resnet18`` (BasicBlock, layers [2, 2, 2, 2], 7x7 stem, max-pool) without its
classifier; ``model.resnet_width`` scales its channels (64, the default, is the standard network).
``zero_init_last=False`` keeps the plain Kaiming/BN(1, 0) initialisation of the official code.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from benchmark.config import ModelConfig
from benchmark.registry import register_backbone


def _resnet18_trunk(in_chans: int, width: int) -> nn.Module:
    return timm.create_model(
        "resnet18",
        pretrained=False,
        num_classes=0,
        global_pool="",
        in_chans=in_chans,
        channels=(width, 2 * width, 4 * width, 8 * width),
        zero_init_last=False,
    )


class SpectrogramResNet18(nn.Module):
    """Audio encoder: (B, F, T) or (B, C, F, T) spectrogram -> 2-D ResNet18 -> global average pool -> 8*width (512)."""

    def __init__(self, in_chans: int = 1, width: int = 64) -> None:
        super().__init__()
        self.trunk = _resnet18_trunk(in_chans, width)
        self.out_dim = 8 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        fmap = self.trunk.forward_features(x.float())
        return fmap.mean(dim=(2, 3))


class FramesResNet18(nn.Module):
    """Visual encoder: (B, C, T, H, W) frames -> per-frame 2-D ResNet18 -> 3-D global average pool -> 8*width (512).

    Follows OGM-GE's ``AVClassifier``: every frame passes through the same 2-D network and the feature maps
    are averaged over time and space (``adaptive_avg_pool3d(., 1)``); there is no temporal modelling.
    A 4-D input (B, C, H, W) is treated as a single frame.
    """

    def __init__(self, in_chans: int = 3, width: int = 64) -> None:
        super().__init__()
        self.trunk = _resnet18_trunk(in_chans, width)
        self.out_dim = 8 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.unsqueeze(2)
        b, c, t, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w).float()
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
