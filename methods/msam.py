"""M-SAM: Modality-Aware Sharpness-Aware Minimization (Nowdeh et al., NeurIPS 2025, arXiv 2510.24919).

What it does, the official defaults, every difference from the released code and the paper, and the tests:
`docs/methods/msam.md`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data import Batch
from benchmark.method import Method, MethodConfig, eval_mode, upcast, with_zero_sample
from benchmark.models import FusionModel
from benchmark.registry import register_method
from benchmark.sam import sam_ascent

Subset = frozenset[str]


# -- Shapley values ------------------------------------------------------------------------------------


def all_subsets(modalities: Sequence[str]) -> list[Subset]:
    """Every subset of ``modalities`` (the empty set included), smallest first."""
    return [frozenset(c) for r in range(len(modalities) + 1) for c in itertools.combinations(modalities, r)]


def shapley_values(acc_by_subset: dict[Subset, float], modalities: Sequence[str]) -> dict[str, float]:
    """Shapley value of each modality for the game ``acc_by_subset`` (every subset must be present)."""
    n = len(modalities)
    phi = {}
    for m in modalities:
        others = [o for o in modalities if o != m]
        total = 0.0
        for s in all_subsets(others):
            weight = math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n)
            total += weight * (acc_by_subset[s | {m}] - acc_by_subset[s])
        phi[m] = total
    return phi


def shapley_shares(phi: dict[str, float]) -> dict[str, float]:
    """``v_m = Phi_m / sum Phi`` with negative values clamped at 0; uniform when no value is positive."""
    clamped = {m: max(v, 0.0) for m, v in phi.items()}
    total = sum(clamped.values())
    if total <= 0.0:
        return {m: 1.0 / len(phi) for m in phi}
    return {m: v / total for m, v in clamped.items()}


def dominant_modality(shares: dict[str, float]) -> str:
    """The modality with the largest share (the first one in order on ties)."""
    best = max(shares.values())
    return next(m for m, v in shares.items() if v == best)


@torch.no_grad()
def subset_accuracies(
    head: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    present: dict[str, torch.Tensor],
    absent: dict[str, torch.Tensor],
    labels: torch.Tensor,
) -> dict[Subset, float]:
    """Batch accuracy of ``head`` for every subset S: modalities in S use ``present[m]``, the others
    ``absent[m]`` (broadcast over the batch: the feature of a masked input)."""
    modalities = list(present)
    out = {}
    for s in all_subsets(modalities):
        feats = {m: present[m] if m in s else absent[m].expand_as(present[m]) for m in modalities}
        out[s] = (head(feats).argmax(1) == labels).float().mean().item()
    return out


# -- the SAM step on the dominant part -----------------------------------------------------------------


def msam_gradients(
    params: Sequence[torch.Tensor],
    closure: Callable[[bool], torch.Tensor],
    share: float,
    rho: float,
    perturb: Sequence[torch.Tensor] | None = None,
    eps: float = 1e-12,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Write ``share * grad l(theta + e) + (1 - share) * grad l(theta)`` into ``p.grad`` for ``params``.

    ``closure(perturbed)`` computes the loss ``l`` (``perturbed`` tells it that theta is moved);
    ``e = rho * g_d / ||g_d||`` with ``g_d = share * grad l`` restricted to ``perturb`` (default: ``params``).
    Parameters are restored exactly before returning (:func:`benchmark.sam.sam_ascent`). Returns the loss at
    theta and at theta + e (0-d tensors).
    """
    params = list(params)
    loss = closure(False)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    perturb_ids = {id(p) for p in (params if perturb is None else perturb)}
    directions = [share * g if id(p) in perturb_ids else None for p, g in zip(params, grads)]
    with sam_ascent(params, directions, rho, eps):
        loss_perturbed = closure(True)
        grads_perturbed = torch.autograd.grad(loss_perturbed, params, allow_unused=True)
    for p, g, gp in zip(params, grads, grads_perturbed):
        gp = torch.zeros_like(p) if gp is None else gp
        p.grad = share * gp + (1.0 - share) * g
    return loss.detach(), loss_perturbed.detach()


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers keep normalising with batch statistics but do not update their running stats."""
    saved = []
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.track_running_stats:
            saved.append((mod, mod.momentum))
            mod.momentum = 0.0
    try:
        yield
    finally:
        for mod, momentum in saved:
            mod.momentum = momentum


@register_method
class MSam(Method):
    """M-SAM: SAM on the Shapley-dominant modality's share of the loss (reconstruction; no official code)."""

    name = "msam"
    display = "M-SAM"
    paper_row = 11.5
    dataset_defaults = {
        # Chosen on validation by the mini_tune grid (benchmark/suites/mini.py, scripts/select_mini.py):
        # method.rho in (0.05, 0.2) x train.lr in (0.003, 0.01, 0.03).
        "av_digits": {"method.rho": 0.05, "train.lr": 0.03},
    }

    @dataclass
    class Config(MethodConfig):
        # SAM neighbourhood radius.
        rho: float = 0.05
        # Parameters moved by the SAM perturbation: the whole model, or the dominant modality's encoder.
        perturb_scope: Literal["all", "dominant_encoder"] = "all"
        # How a modality outside a Shapley coalition is masked: zero input (encoder sees zeros) or zero feature.
        mask: Literal["input", "feature"] = "input"

        def validate(self) -> None:
            if self.rho < 0:
                raise ValueError(f"method.rho must be >= 0, got {self.rho}")

    def setup(self) -> None:
        if not isinstance(self.model, FusionModel):
            raise TypeError("msam needs the encoders + fusion head model (FusionModel)")
        self._epoch_shares: dict[str, float] = {}
        self._epoch_dominant: dict[str, int] = {}
        self._epoch_steps = 0
        self.history: list[dict[str, Any]] = []

    # -- Shapley on the batch --------------------------------------------------------------------------
    @torch.no_grad()
    def batch_shares(self, batch: Batch) -> dict[str, float]:
        model = self.model
        with eval_mode(model), self.autocast():
            if self.cfg.mask == "input":
                # one eval-mode pass per encoder with the zero input appended: samples do not interact
                # in eval mode, so the rows are those of two separate passes (to rounding)
                both = {m: model.encoders[m](with_zero_sample(batch[m])) for m in self.modalities}
                present = {m: both[m][:-1] for m in self.modalities}
                absent = {m: both[m][-1:] for m in self.modalities}
            else:
                present = {m: model.encoders[m](batch[m]) for m in self.modalities}
                absent = {m: torch.zeros_like(present[m][:1]) for m in self.modalities}
            acc = subset_accuracies(model.fusion, present, absent, batch["label"])
        return shapley_shares(shapley_values(acc, self.modalities))

    # -- training --------------------------------------------------------------------------------------
    def training_step(self, batch: Batch, step: int) -> dict[str, float]:
        shares = self.batch_shares(batch)
        dom = dominant_modality(shares)
        share = shares[dom]
        params = [p for p in self.model.parameters() if p.requires_grad]
        perturb = None
        if self.cfg.perturb_scope == "dominant_encoder":
            perturb = [p for p in self.model.encoders[dom].parameters() if p.requires_grad]

        def closure(perturbed: bool) -> torch.Tensor:
            ctx = frozen_bn_stats(self.model) if perturbed else contextlib.nullcontext()
            with ctx:
                out = self.forward(batch)
            return F.cross_entropy(upcast(out.logits), batch["label"])

        self.optimizer.zero_grad(set_to_none=True)
        loss, loss_perturbed = msam_gradients(params, closure, share, self.cfg.rho, perturb)
        self.optimizer.step()

        self._epoch_steps += 1
        self._epoch_dominant[dom] = self._epoch_dominant.get(dom, 0) + 1
        for m, v in shares.items():
            self._epoch_shares[m] = self._epoch_shares.get(m, 0.0) + v
        stats = {"loss": loss, "loss_perturbed": loss_perturbed, "dominant_share": share}
        stats.update({f"share_{m}": v for m, v in shares.items()})
        return stats

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        self._epoch_shares, self._epoch_dominant, self._epoch_steps = {}, {}, 0

    def on_epoch_end(self, epoch: int) -> None:
        n = max(self._epoch_steps, 1)
        self.history.append(
            {
                "epoch": epoch + 1,
                "mean_share": {m: self._epoch_shares.get(m, 0.0) / n for m in self.modalities},
                "dominant_fraction": {m: self._epoch_dominant.get(m, 0) / n for m in self.modalities},
            }
        )

    # -- state -----------------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))

    def artifacts(self) -> dict[str, Any]:
        """Per epoch: mean Shapley share of each modality and the fraction of steps it was dominant."""
        return {"shapley": self.history}
