"""A constructed three-modality setting (tiny conv encoders, concat head) for methods that support M > 2."""

from __future__ import annotations

import torch
from conftest import short_config
from torch import nn

from benchmark.data import DatasetInfo
from benchmark.fusion import build_fusion
from benchmark.method import MethodContext
from benchmark.models import FusionModel
from benchmark.registry import METHODS

MODALITIES = ("rgb", "depth", "flow")


class TinyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.out_dim = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))


def three_modality_method(name: str, **overrides):
    """(method, batch) for ``name`` on a 4-class, three-modality toy problem; the method is set up."""
    torch.manual_seed(0)
    cfg = short_config(name, **overrides)
    info = DatasetInfo(name="toy3", modalities=MODALITIES, num_classes=4, class_names=tuple("abcd"))
    ctx = MethodContext(config=cfg, info=info, device=torch.device("cpu"), splits={})
    method = METHODS.get(name)(cfg.method_cfg, ctx)
    encoders = nn.ModuleDict({m: TinyEncoder() for m in MODALITIES})
    method.model = FusionModel(encoders, build_fusion("concat", {m: 4 for m in MODALITIES}, 4))
    method.optimizer = torch.optim.SGD(method.model.parameters(), lr=0.1)
    method.setup()
    batch = {m: torch.randn(8, 3, 6, 6) for m in MODALITIES}
    batch["label"] = torch.arange(8) % 4
    return method, batch
