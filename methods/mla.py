"""MLA: Multimodal Learning with Alternating Unimodal Adaptation (Zhang et al., CVPR 2024).

What it does, the official defaults, every difference from the released code and the paper, and the tests:
`docs/methods/mla.md`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data import Batch
from benchmark.method import Method, MethodConfig, upcast
from benchmark.models import ModelOutput, build_encoders, official_weight_init
from benchmark.recipes import recipe
from benchmark.registry import register_method


def entropy_fusion_weights(logits_list: Sequence[torch.Tensor], per_sample: bool = False) -> torch.Tensor:
    """MLA's entropy gating weights ``w_m = exp(max_j H_j - H_m) / sum_j exp(max_j H_j - H_j)``.

    ``per_sample=False`` (official ``calculate_gating_weights``): ``p = softmax(logits_m, dim=0)`` over the batch
    and ``H_m = -sum p log p`` over the whole B x C matrix; returns shape (M,).
    ``per_sample=True`` (paper): ``p = softmax(logits_m, dim=1)`` per sample; returns shape (M, B).
    """
    dim = 1 if per_sample else 0
    ents = []
    for lg in logits_list:
        logp = F.log_softmax(upcast(lg), dim=dim)
        h = -(logp.exp() * logp)
        ents.append(h.sum(dim=1) if per_sample else h.sum())
    h_all = torch.stack(ents)  # (M,) or (M, B)
    return torch.softmax(-h_all, dim=0)


def fuse_logits(logits_list: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``sum_m w_m * logits_m`` with weights of shape (M,) or (M, B)."""
    out = torch.zeros_like(logits_list[0], dtype=torch.float32)
    for lg, w in zip(logits_list, weights):
        out = out + (w.reshape(-1, 1) if w.dim() else w) * upcast(lg)
    return out


def owm_update(p: torch.Tensor, r: torch.Tensor, alpha: float, scalar: bool = True) -> torch.Tensor:
    """One GSPlugin update of the projector: ``P - k k^T / (alpha + r k)``, Frobenius-normalised, k = P r^T.

    ``scalar=True`` is OWM's (paper's) scalar denominator; ``scalar=False`` the released code's elementwise
    division by the D x D matrix ``alpha + k r`` (``torch.mm(k, r)``).
    """
    r = r.reshape(1, -1).to(p.dtype)
    k = p @ r.t()  # (D, 1)
    denom = alpha + (r @ k) if scalar else alpha + k @ r
    p = p - (k @ k.t()) / denom
    return p / p.norm()


def projection_alpha(step: int, steps_per_epoch: int) -> float:
    """``0.1 ** (step / steps_per_epoch + 1)``: 0.1 at an epoch's first step, towards 0.01 at its end."""
    return 0.1 ** (step / max(steps_per_epoch, 1) + 1)


def default_fixed_weights(n: int) -> tuple[float, ...]:
    """The official fixed fusion weights: (0.55, 0.45) for two modalities, (0.35, 0.25, 0.4) for three."""
    if n == 2:
        return (0.55, 0.45)
    if n == 3:
        return (0.35, 0.25, 0.4)
    return tuple(1.0 / n for _ in range(n))


class SharedHeadModel(nn.Module):
    """Encoders and one linear head shared by every modality; the default fused logits are the mean."""

    def __init__(self, encoders: nn.ModuleDict, num_classes: int) -> None:
        super().__init__()
        dims = {m: int(e.out_dim) for m, e in encoders.items()}
        if len(set(dims.values())) != 1:
            raise ValueError(
                f"MLA shares one head across modalities, so every encoder needs the same feature size; got {dims}. "
                "Choose backbones with equal out_dim (--set model.backbones=...)"
            )
        self.encoders = encoders
        self.modalities = tuple(encoders.keys())
        self.head = nn.Linear(next(iter(dims.values())), num_classes)
        # main.py ``model.apply(weight_init)``: xavier-normal weight, zero bias (the ResNet encoders already have
        # its Kaiming fan-out / BatchNorm 1-0 init; pretrained encoders are not re-initialised).
        self.head.apply(official_weight_init)

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {m: self.encoders[m](batch[m]) for m in self.modalities}

    def forward(self, batch: Batch) -> ModelOutput:
        feats = self.encode(batch)
        uni = {m: self.head(f) for m, f in feats.items()}
        fused = torch.stack([uni[m] for m in self.modalities]).mean(0)
        return ModelOutput(logits=fused, features=feats, unimodal_logits=uni)


@register_method
class Mla(Method):
    """MLA: alternating unimodal steps through one shared head; entropy-weighted logit fusion at test time."""

    name = "mla"
    display = "MLA"
    paper_row = 13

    @dataclass
    class Config(MethodConfig):
        # official: no projection (dead code), batch-level entropy fusion; paper: OWM projection, per-sample fusion.
        variant: Literal["official", "paper"] = "official"
        # Test-time fusion: "dynamic" (entropy, the README's --dynamic) or "fixed" weights.
        inference: Literal["dynamic", "fixed"] = "dynamic"
        # Fixed fusion weights in modality order; empty = official (0.55/0.45; 0.35/0.25/0.4).
        fixed_weights: tuple[float, ...] = ()

    # Official CREMA-D script: SGD 1e-3 (0.9, 1e-4), StepLR(70, 0.1), batch 64, 100 epochs.
    dataset_defaults = {ds: {**recipe("ogm_ge_sgd"), "train.epochs": 100} for ds in ("crema_d", "kinetics_sounds")}

    def build_model(self) -> nn.Module:
        return SharedHeadModel(build_encoders(self.ctx.info, self.ctx.config.model), self.ctx.info.num_classes)

    def setup(self) -> None:
        if self.cfg.fixed_weights and len(self.cfg.fixed_weights) != len(self.modalities):
            raise ValueError(
                f"method.fixed_weights has {len(self.cfg.fixed_weights)} values for {len(self.modalities)} modalities"
            )
        dim = self.model.head.in_features
        self.projector = torch.eye(dim, device=self.device)
        self.exp_count = 0
        self.steps_per_epoch = 1

    @property
    def project(self) -> bool:
        return self.cfg.variant == "paper"

    def train_loader(self, epoch: int) -> Iterable[Batch]:
        loader = super().train_loader(epoch)
        limit = self.ctx.train.max_steps_per_epoch
        self.steps_per_epoch = min(len(loader), limit) if limit else len(loader)
        return loader

    def training_step(self, batch: Batch, step: int) -> dict[str, float]:
        with self.autocast():
            feats = self.model.encode(batch)
        y = batch["label"]
        head: nn.Linear = self.model.head
        stats: dict[str, float] = {}
        losses = []
        for m in self.modalities:
            with self.autocast():
                loss = F.cross_entropy(head(feats[m]), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.project and self.exp_count != 0:
                alpha = projection_alpha(step, self.steps_per_epoch)
                r = upcast(feats[m].detach()).mean(0)
                self.projector = owm_update(self.projector, r, alpha, scalar=True)
                head.weight.grad = head.weight.grad @ self.projector.t()
            self.optimizer.step()
            self.exp_count += 1
            stats[f"loss_{m}"] = float(loss.detach())
            losses.append(stats[f"loss_{m}"])
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": sum(losses) / len(losses), **stats}

    def fusion_weights(self, uni: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.cfg.inference == "fixed":
            w = self.cfg.fixed_weights or default_fixed_weights(len(uni))
            return torch.tensor(w, dtype=torch.float32, device=uni[0].device)
        return entropy_fusion_weights(uni, per_sample=self.cfg.variant == "paper")

    def predict(self, batch: Batch) -> ModelOutput:
        out = self.forward(batch)
        uni = [out.unimodal_logits[m] for m in self.modalities]
        return ModelOutput(
            logits=fuse_logits(uni, self.fusion_weights(uni)),
            features=out.features,
            unimodal_logits=out.unimodal_logits,
        )

    def extra_state(self) -> dict[str, Any]:
        return {"projector": self.projector.cpu(), "exp_count": self.exp_count}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.projector = state["projector"].to(self.device)
        self.exp_count = int(state["exp_count"])
