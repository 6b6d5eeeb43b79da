"""Fusion heads of OGM-GE (``models/fusion_modules.py``): concat, sum, FiLM and gated.

Each head maps the per-modality features (a dict in the dataset's modality order) to fused logits, and
exposes ``unimodal_logits`` so that every method's per-modality accuracy is measured the same way:

* concat: the modality's column block of the fused weight plus ``bias / M`` (OGM-GE's training code);
* sum: the modality's own linear layer (OGM-GE after commit 5480329, full bias);
* FiLM and gated: the fused head evaluated with the other modality's features set to zero. OGM-GE's released
  code crashes for these two heads (it slices 256 columns against 512-d features); this is the nearest
  analogue of a per-modality read-out and is our choice.
"""

from __future__ import annotations

import torch
from torch import nn

Features = dict[str, torch.Tensor]


class FusionHead(nn.Module):
    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.modalities = tuple(dims)
        self.dims = dict(dims)
        self.num_classes = num_classes

    def unimodal_logits(self, feats: Features) -> Features:  # pragma: no cover - abstract
        raise NotImplementedError

    def _with_others_zeroed(self, feats: Features) -> Features:
        out = {}
        for m in self.modalities:
            masked = {k: (v if k == m else torch.zeros_like(v)) for k, v in feats.items()}
            out[m] = self(masked)
        return out


class ConcatFusion(FusionHead):
    """``fc_out(cat(f_1, ..., f_M))``."""

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        self.fc_out = nn.Linear(sum(dims.values()), num_classes)

    def forward(self, feats: Features) -> torch.Tensor:
        return self.fc_out(torch.cat([feats[m] for m in self.modalities], dim=1))

    def unimodal_logits(self, feats: Features) -> Features:
        out, start = {}, 0
        share = self.fc_out.bias / len(self.modalities)
        for m in self.modalities:
            d = self.dims[m]
            out[m] = feats[m] @ self.fc_out.weight[:, start : start + d].t() + share
            start += d
        return out


class SumFusion(FusionHead):
    """``sum_m fc_m(f_m)``."""

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        self.fcs = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})

    def forward(self, feats: Features) -> torch.Tensor:
        return torch.stack([self.fcs[m](feats[m]) for m in self.modalities]).sum(0)

    def unimodal_logits(self, feats: Features) -> Features:
        return {m: self.fcs[m](feats[m]) for m in self.modalities}


def _require_two(dims: dict[str, int], what: str) -> None:
    if len(dims) != 2:
        raise ValueError(f"{what} fusion needs exactly two modalities, got {list(dims)}")


class FiLMFusion(FusionHead):
    """FiLM: the first modality yields (gamma, beta) that modulate the second; ``fc_out(gamma*y + beta)``."""

    def __init__(self, dims: dict[str, int], num_classes: int, hidden: int = 512) -> None:
        super().__init__(dims, num_classes)
        _require_two(dims, "FiLM")
        x_dim, y_dim = (dims[m] for m in self.modalities)
        self.hidden = hidden
        self.fc = nn.Linear(x_dim, 2 * hidden)
        self.proj_y = nn.Identity() if y_dim == hidden else nn.Linear(y_dim, hidden)
        self.fc_out = nn.Linear(hidden, num_classes)

    def forward(self, feats: Features) -> torch.Tensor:
        x, y = (feats[m] for m in self.modalities)
        gamma, beta = torch.split(self.fc(x), self.hidden, dim=1)
        return self.fc_out(gamma * self.proj_y(y) + beta)

    def unimodal_logits(self, feats: Features) -> Features:
        return self._with_others_zeroed(feats)


class GatedFusion(FusionHead):
    """Gated: ``fc_out(sigmoid(fc_x(x)) * fc_y(y))`` with the first modality as the gate."""

    def __init__(self, dims: dict[str, int], num_classes: int, hidden: int = 512) -> None:
        super().__init__(dims, num_classes)
        _require_two(dims, "gated")
        x_dim, y_dim = (dims[m] for m in self.modalities)
        self.fc_x = nn.Linear(x_dim, hidden)
        self.fc_y = nn.Linear(y_dim, hidden)
        self.fc_out = nn.Linear(hidden, num_classes)

    def forward(self, feats: Features) -> torch.Tensor:
        x, y = (feats[m] for m in self.modalities)
        return self.fc_out(torch.sigmoid(self.fc_x(x)) * self.fc_y(y))

    def unimodal_logits(self, feats: Features) -> Features:
        return self._with_others_zeroed(feats)


FUSIONS: dict[str, type[FusionHead]] = {
    "concat": ConcatFusion,
    "sum": SumFusion,
    "film": FiLMFusion,
    "gated": GatedFusion,
}


def build_fusion(name: str, dims: dict[str, int], num_classes: int) -> FusionHead:
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; choices: {', '.join(FUSIONS)}")
    return FUSIONS[name](dims, num_classes)
