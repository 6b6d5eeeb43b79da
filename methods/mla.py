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
from benchmark.entropy_fusion import entropy_fusion_weights, fuse_logits
from benchmark.method import Method, MethodConfig, upcast
from benchmark.models import ModelOutput, build_encoders, official_weight_init
from benchmark.recipes import recipe
from benchmark.registry import register_method


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
    dataset_defaults = {
        **{ds: {**recipe("ogm_ge_sgd"), "train.epochs": 100} for ds in ("crema_d", "kinetics_sounds")},
        # Chosen on validation by the mini_tune grid (benchmark/suites/mini.py, scripts/select_mini.py):
        # train.lr in (0.003, 0.01, 0.03) x train.weight_decay in (0.0001, 0.001).
        "av_digits": {"train.lr": 0.003, "train.weight_decay": 0.0001},
    }

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
        self.grad_cosine: list[dict[str, Any]] = []  # per epoch, see log_head_gradient
        self._cos: list[torch.Tensor] = []  # per step, on the device
        self._last_grad: torch.Tensor | None = None

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
            self.log_head_gradient(head.weight.grad)
            self.optimizer.step()
            self.exp_count += 1
            stats[f"loss_{m}"] = loss.detach()
            losses.append(stats[f"loss_{m}"])
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": sum(v.double() for v in losses) / len(losses), **stats}  # the floats' mean

    def log_head_gradient(self, grad: torch.Tensor) -> None:
        """Analysis only (IGM Figure 1): the cosine between the shared head's weight gradient of this modality's
        step (after any projection: what the optimiser applies) and that of the previous modality's step."""
        g = grad.detach().reshape(-1).clone()
        if self._last_grad is not None:
            self._cos.append(F.cosine_similarity(upcast(g), upcast(self._last_grad), dim=0))  # read per epoch
        self._last_grad = g

    def on_epoch_end(self, epoch: int) -> None:
        if self._cos:
            cos = torch.stack(self._cos).float().cpu()  # float32, as the Python floats' tensor was
            self.grad_cosine.append(
                {
                    "epoch": epoch + 1,
                    "cosine": float(cos.mean()),
                    "cosine_min": float(cos.min()),
                    "cosine_max": float(cos.max()),
                    "steps": len(cos),
                }
            )
        self._cos = []

    def artifacts(self) -> dict[str, Any]:
        return {"grad_cosine": [dict(e) for e in self.grad_cosine]}

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
        last = None if self._last_grad is None else self._last_grad.cpu()  # the next epoch's first cosine needs it
        return {
            "projector": self.projector.cpu(),
            "exp_count": self.exp_count,
            "grad_cosine": self.grad_cosine,
            "last_grad": last,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.projector = state["projector"].to(self.device)
        self.exp_count = int(state["exp_count"])
        self.grad_cosine = list(state.get("grad_cosine", []))
        last = state.get("last_grad")
        self._last_grad = None if last is None else last.to(self.device)
