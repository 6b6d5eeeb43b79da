"""G-Blending / OGR-GB (Wang, Tran, Feiszli, "What Makes Training Multi-modal Classification Networks Hard?",
CVPR 2020): per-modality heads plus the fused head, trained on a blend of their losses with weights
proportional to generalisation over overfitting squared.

What it does, the official defaults, every difference from the released code and the paper, and the tests:
`docs/methods/gblending.md`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data import Batch
from benchmark.fusion import build_fusion
from benchmark.method import Method, MethodConfig, build_optimizer, eval_mode, upcast
from benchmark.models import ModelOutput, build_encoders
from benchmark.registry import register_method

FUSED = "fused"


def blend_weights(
    before: dict[str, tuple[float, float]],
    after: dict[str, tuple[float, float]],
    min_overfit: float = 1e-4,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """G-Blend weights from (train loss, held-out loss) before and after each head's probe window.

    Returns the normalised weights and, per head, the raw ``G``, ``O`` and unnormalised weight.
    """
    raw, detail = {}, {}
    for k in before:
        train0, val0 = before[k]
        train1, val1 = after[k]
        g = val0 - val1
        o = (val1 - train1) - (val0 - train0)
        w = max(g, 0.0) / max(abs(o), min_overfit) ** 2
        raw[k] = w
        detail[k] = {"G": g, "O": o, "w_raw": w}
    total = sum(raw.values())
    if not math.isfinite(total) or total <= 0.0:
        return {k: 1.0 / len(raw) for k in raw}, detail
    return {k: w / total for k, w in raw.items()}, detail


class GBlendModel(nn.Module):
    """Encoders, one linear head per modality, and the fused head on all features."""

    def __init__(self, encoders: nn.ModuleDict, fusion: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.encoders = encoders
        self.fusion = fusion
        self.modalities = tuple(encoders.keys())
        self.heads = nn.ModuleDict({m: nn.Linear(int(e.out_dim), num_classes) for m, e in encoders.items()})

    def unimodal(self, batch: Batch, modality: str) -> torch.Tensor:
        return self.heads[modality](self.encoders[modality](batch[modality]))

    def forward(self, batch: Batch) -> ModelOutput:
        feats = {m: self.encoders[m](batch[m]) for m in self.modalities}
        return ModelOutput(
            logits=self.fusion(feats),
            features=feats,
            unimodal_logits={m: self.heads[m](feats[m]) for m in self.modalities},
        )

    def logits_of(self, batch: Batch, head: str) -> torch.Tensor:
        """The logits of one blended head: a modality's own head, or the fused head."""
        return self.forward(batch).logits if head == FUSED else self.unimodal(batch, head)


@register_method
class GBlending(Method):
    """G-Blending (OGR-GB): losses of per-modality and fused heads blended with weights ~ G/O^2 (paper)."""

    name = "gblending"
    display = "OGR-GB"
    paper_row = 2
    dataset_defaults = {
        # 6-epoch quick suite: two super-epochs, one-epoch probes (19 steps), |O| floored at the noise level
        # of a loss measured on a few hundred samples (about 1.8x joint).
        "av_digits": {
            "method.super_epoch": 3,
            "method.probe_steps": 19,
            "method.loss_batches": 2,
            "method.min_overfit": 0.01,
            # Chosen on validation by the mini_tune grid (benchmark/suites/mini.py, scripts/select_mini.py):
            # train.lr in (0.003, 0.01, 0.03) x train.weight_decay in (0.0001, 0.001).
            "train.lr": 0.03,
            "train.weight_decay": 0.001,
        },
    }

    @dataclass
    class Config(MethodConfig):
        # Epochs between weight re-estimations (BalanceBenchmark: 10).
        super_epoch: int = 10
        # Training steps of each probe; 0 = one whole super-epoch (the paper's window).
        probe_steps: int = 0
        # Training batches (eval batch size) on which L^T is measured; 0 = the whole training split.
        loss_batches: int = 0
        # Floor on |O| in w = G / O^2.
        min_overfit: float = 1e-4

        def validate(self) -> None:
            if self.super_epoch < 1:
                raise ValueError(f"method.super_epoch must be >= 1, got {self.super_epoch}")
            if self.probe_steps < 0 or self.loss_batches < 0:
                raise ValueError("method.probe_steps and method.loss_batches must be >= 0")
            if self.min_overfit <= 0:
                raise ValueError(f"method.min_overfit must be > 0, got {self.min_overfit}")

    def build_model(self) -> nn.Module:
        info, model_cfg = self.ctx.info, self.ctx.config.model
        encoders = build_encoders(info, model_cfg)
        fusion = build_fusion(model_cfg.fusion, {m: int(e.out_dim) for m, e in encoders.items()}, info.num_classes)
        return GBlendModel(encoders, fusion, info.num_classes)

    def setup(self) -> None:
        self.heads = (*self.modalities, FUSED)
        self.weights = {k: 1.0 / len(self.heads) for k in self.heads}
        self.history: list[dict[str, Any]] = []

    # -- weight estimation ------------------------------------------------------------------------------
    @torch.no_grad()
    def _losses(self, model: GBlendModel, heads: tuple[str, ...]) -> dict[str, tuple[float, float]]:
        """(train loss, held-out loss) of each head, model in eval mode."""
        out = {}
        with eval_mode(model):
            sums = {(k, s): 0.0 for k in heads for s in ("train", "val")}
            counts = {"train": 0, "val": 0}
            for split, limit in (("train", self.cfg.loss_batches), ("val", 0)):
                loader = self.ctx.loader(split, shuffle=False, batch_size=self.ctx.train.eval_batch_size)
                for batch in self.ctx.batches(loader, limit):
                    y = batch["label"]
                    with self.autocast():
                        if len(heads) == 1 and heads[0] != FUSED:
                            logits = {heads[0]: model.unimodal(batch, heads[0])}
                        else:
                            full = model(batch)
                            logits = {FUSED: full.logits, **full.unimodal_logits}
                    for k in heads:
                        sums[(k, split)] += F.cross_entropy(upcast(logits[k]), y, reduction="sum").item()
                    counts[split] += len(y)
            for k in heads:
                out[k] = (sums[(k, "train")] / counts["train"], sums[(k, "val")] / counts["val"])
        return out

    def _probe(self, head: str, epoch: int) -> dict[str, tuple[float, float]]:
        """Train a copy of the model on ``CE_head`` for the probe window; its losses afterwards."""
        probe = copy.deepcopy(self.model)
        probe.train()
        optimizer = build_optimizer(probe.parameters(), self.ctx.train, lr=self.optimizer.param_groups[0]["lr"])
        if self.cfg.probe_steps:
            steps = self.cfg.probe_steps
        else:  # one whole super-epoch, as many steps as the main run takes per epoch
            per_epoch = len(self.ctx.loader("train"))
            if self.ctx.train.max_steps_per_epoch:
                per_epoch = min(per_epoch, self.ctx.train.max_steps_per_epoch)
            steps = self.cfg.super_epoch * per_epoch
        done, pass_ = 0, 0
        while done < steps:
            # Probe batches come from their own loader order (epoch offset), not the main run's.
            loader = self.ctx.loader("train", epoch=1_000_000 + 1000 * epoch + pass_)
            for batch in self.ctx.batches(loader, steps - done):
                with self.autocast():
                    loss = F.cross_entropy(upcast(probe.logits_of(batch, head)), batch["label"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                done += 1
            pass_ += 1
        return self._losses(probe, (head,))

    def estimate_weights(self, epoch: int) -> None:
        before = self._losses(self.model, self.heads)
        after = {}
        for k in self.heads:
            after.update(self._probe(k, epoch))
        self.weights, detail = blend_weights(before, after, self.cfg.min_overfit)
        self.history.append(
            {
                "epoch": epoch + 1,
                "weights": dict(self.weights),
                **{f"{k}": {**detail[k], "before": before[k], "after": after[k]} for k in self.heads},
            }
        )

    # -- training --------------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        if epoch % self.cfg.super_epoch == 0:
            self.estimate_weights(epoch)

    def training_step(self, batch: Batch, step: int) -> dict[str, float]:
        out = self.forward(batch)
        y = batch["label"]
        losses = {FUSED: F.cross_entropy(upcast(out.logits), y)}
        for m in self.modalities:
            losses[m] = F.cross_entropy(upcast(out.unimodal_logits[m]), y)
        loss = sum(self.weights[k] * losses[k] for k in self.heads)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach(), **{f"loss_{k}": v.detach() for k, v in losses.items()}}

    # -- state -----------------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"weights": self.weights, "history": self.history}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.weights = dict(state["weights"])
        self.history = list(state.get("history", []))

    def artifacts(self) -> dict[str, Any]:
        """Per super-epoch: the blend weights and each head's G, O and (train, held-out) losses."""
        return {"blend_weights": self.history}
