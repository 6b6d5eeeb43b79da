"""OGM and OGM-GE: on-the-fly gradient modulation (Peng et al., CVPR 2022), after ``GeWu-Lab/OGM-GE_CVPR2022``.

What it does, the official defaults, every difference from the released code and the paper, and the tests:
`docs/methods/ogm.md`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data import Batch
from benchmark.method import EpochWindowConfig, Method, upcast
from benchmark.models import apply_official_init
from benchmark.recipes import recipe
from benchmark.registry import register_method


def true_class_score(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """``sum_i softmax(logits)_i[y_i]``: the batch-summed probability of the true class (OGM's ``score``)."""
    probs = torch.softmax(upcast(logits.detach()), dim=1)
    return float(probs.gather(1, labels.view(-1, 1)).sum())


def modulation_coefficients_multi(logits: Sequence[torch.Tensor], labels: torch.Tensor, alpha: float) -> list[float]:
    """OGM coefficients for M >= 2 modalities (MLA repository's rule, reducing to OGM's for M = 2).

    ``rho_m = s_m / sum_{j != m} s_j``; the first of modalities 2..M with ``rho_m > 1`` gets
    ``k_m = 1 - tanh(alpha * relu(rho_m))``; if none has, modality 1 gets it; every other k is 1.
    """
    if len(logits) < 2:
        raise ValueError("OGM needs at least two modalities")
    scores = [true_class_score(lg, labels) for lg in logits]
    total = sum(scores)
    ratios = [s / (total - s) for s in scores]
    coeffs = [1.0] * len(scores)
    chosen = next((m for m in range(1, len(scores)) if ratios[m] > 1), 0)
    coeffs[chosen] = 1.0 - math.tanh(alpha * max(ratios[chosen], 0.0))
    return coeffs


def modulation_coefficients(
    logits_a: torch.Tensor, logits_v: torch.Tensor, labels: torch.Tensor, alpha: float
) -> tuple[float, float]:
    """OGM-GE Eq. 10 as in ``main.py``: ``rho_v = s_v / s_a``; ``rho_v > 1`` scales visual, otherwise audio."""
    k_a, k_v = modulation_coefficients_multi([logits_a, logits_v], labels, alpha)
    return k_a, k_v


@dataclass
class OgmConfig(EpochWindowConfig):
    # Modulation strength (OGM-GE README: 0.8 for CREMA-D, 0.1 for VGGSound).
    alpha: float = 0.8
    # Inclusive epoch window in which gradients are modulated, numbered from 0 as main.py (official: 0-50 of 100).
    modulation_starts: int = 0
    modulation_ends: int = 50
    # "official": conv kernels only, GE noise on every modality; "paper": all encoder parameters, noise on the
    # suppressed modality only.
    variant: Literal["official", "paper"] = "official"
    # Parameters modulated: "auto" (by variant), "conv" (gradients with >= 4 dims), "weights" (>= 2 dims,
    # the authors' advice for encoders with linear layers, OGM-GE issue #22), "all" (every encoder parameter).
    scope: Literal["auto", "conv", "weights", "all"] = "auto"

    def validate(self) -> None:
        super().validate()
        if self.alpha < 0:
            raise ValueError(f"method.alpha must be >= 0, got {self.alpha}")


_MIN_DIMS = {"conv": 4, "weights": 2, "all": 0}

# OGM-GE main.py / README on the audio-visual datasets: SGD(0.9, 1e-4) lr 1e-3, StepLR(70, 0.1), batch 64,
# 100 epochs, modulation in epochs 0-50.
_OFFICIAL_AV = {
    **recipe("ogm_ge_sgd"),
    "train.epochs": 100,
    "method.modulation_starts": 0,
    "method.modulation_ends": 50,
}


@register_method
class Ogm(Method):
    """OGM (CVPR'22): scale the dominant modality's encoder gradients by 1 - tanh(alpha * rho)."""

    name = "ogm"
    display = "OGM"
    paper_row = 3
    Config = OgmConfig
    # Whether Gaussian noise (generalisation enhancement) is added; OGM-GE sets it.
    add_noise = False
    dataset_defaults = {
        "crema_d": {**_OFFICIAL_AV, "method.alpha": 0.8},
        # No published alpha for Kinetics-Sounds in the OGM-GE repo; the CREMA-D value is kept.
        "kinetics_sounds": dict(_OFFICIAL_AV),
        # Transformer encoders have (almost) no conv kernels: modulate every weight matrix (issue #22).
        "twitter2015": {"method.scope": "weights"},
        "sarcasm": {"method.scope": "weights"},
        # Chosen on validation by the mini_tune grid (benchmark/suites/mini.py, scripts/select_mini.py):
        # method.alpha in (0.3, 0.8) x train.lr in (0.003, 0.01, 0.03).
        "av_digits": {"method.alpha": 0.3, "train.lr": 0.03},
    }

    def build_model(self) -> nn.Module:
        """The fusion model with ``model.apply(weight_init)`` as ``main.py`` (xavier-normal head, zero bias)."""
        return apply_official_init(super().build_model())

    def setup(self) -> None:
        encoders = getattr(self.model, "encoders", None)
        fusion = getattr(self.model, "fusion", None)
        if not isinstance(encoders, nn.ModuleDict) or not hasattr(fusion, "unimodal_logits"):
            raise TypeError(f"{self.name} needs a FusionModel (model.encoders and model.fusion.unimodal_logits)")
        scope = self.cfg.scope
        if scope == "auto":
            scope = "conv" if self.cfg.variant == "official" else "all"
        self._params: dict[str, list[nn.Parameter]] = {}
        for m in self.modalities:
            params = [p for p in encoders[m].parameters() if p.requires_grad and p.dim() >= _MIN_DIMS[scope]]
            if not params:
                raise ValueError(
                    f"{self.name}: the {m!r} encoder has no parameters in scope {scope!r} (no conv kernels?); "
                    "set --set method.scope=weights or method.scope=all"
                )
            self._params[m] = params

    def coefficients(self, unimodal_logits: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
        ks = modulation_coefficients_multi([unimodal_logits[m] for m in self.modalities], labels, self.cfg.alpha)
        return dict(zip(self.modalities, ks, strict=True))

    def modulate(self, coeffs: dict[str, float]) -> None:
        """Rewrite the encoders' gradients in place: ``g <- k g`` (OGM) or ``g <- k g + N(0, std(g)^2)`` (GE)."""
        for m, k in coeffs.items():
            noisy = self.add_noise and (self.cfg.variant == "official" or k < 1.0)
            grads = [p.grad for p in self._params[m] if p.grad is not None]
            if not grads:
                continue
            noises = []
            if noisy:  # std of the unscaled gradient (code at HEAD); one draw per tensor, in parameter order
                for g in grads:
                    std = g.std() if g.numel() > 1 else torch.zeros((), device=g.device, dtype=g.dtype)
                    # scaled in place: the same values as ``randn_like(g) * (std + 1e-8)`` without a second
                    # gradient-sized buffer per tensor (75 ms of a 2 s CREMA-D CPU step, docs/performance.md)
                    noises.append(torch.randn_like(g).mul_(std + 1e-8))
            torch._foreach_mul_(grads, k)  # one fused kernel instead of a launch per tensor
            if noises:
                torch._foreach_add_(grads, noises)

    def backward(self, batch: Batch) -> dict[str, float]:
        """Forward, cross-entropy backward and (inside the window) the gradient modulation; no optimiser step."""
        labels = batch["label"]
        out = self.forward(batch)
        loss = F.cross_entropy(out.logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        coeffs = self.coefficients(out.unimodal_logits, labels)
        if self.cfg.in_window(self.epoch):
            self.modulate(coeffs)
        return {"loss": loss.detach(), **{f"k_{m}": k for m, k in coeffs.items()}}

    def training_step(self, batch: Batch, step: int) -> dict[str, float]:
        stats = self.backward(batch)
        self.optimizer.step()
        return stats


@register_method
class OgmGe(Ogm):
    """OGM-GE (CVPR'22): OGM plus Gaussian noise with the gradient's own std (generalisation enhancement)."""

    name = "ogm_ge"
    display = "OGM-GE"
    paper_row = 3.5
    add_noise = True
    dataset_defaults = {
        **Ogm.dataset_defaults,
        # Chosen on validation by the mini_tune grid (benchmark/suites/mini.py, scripts/select_mini.py):
        # method.alpha in (0.3, 0.8) x train.lr in (0.003, 0.01, 0.03).
        "av_digits": {"method.alpha": 0.3, "train.lr": 0.03},
    }
