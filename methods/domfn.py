"""DOMFN: A Divergence-Orientated Multi-Modal Fusion Network (Yang et al., ACM MM 2022; ``njustkmg/MM22_DOMFN``).

What it does, the official defaults, every difference from the released code and the paper, and the tests:
`docs/methods/domfn.md`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data import Batch, DatasetInfo
from benchmark.method import Method, MethodConfig, upcast
from benchmark.models import ModelOutput, build_encoder
from benchmark.registry import register_method


def divergence_penalty(
    scores: dict[str, torch.Tensor], reference: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """``p_m = max_c (s_m[c] - ref[c])^2`` per sample; ``ref`` = mean of the modalities' scores unless given."""
    ref = torch.stack(list(scores.values())).mean(0) if reference is None else reference
    return {m: ((s - ref) ** 2).max(dim=1).values for m, s in scores.items()}


def joint_mask(penalties: dict[str, torch.Tensor], tau: float, gamma: float) -> torch.Tensor:
    """True for the samples whose every ``p_m / tau < gamma`` (joint step / fused prediction)."""
    return torch.stack([(p.detach() / tau) < gamma for p in penalties.values()]).all(0)


def domfn_loss(
    ce: dict[str, torch.Tensor],
    ce_fused: torch.Tensor,
    penalties: dict[str, torch.Tensor],
    joint: torch.Tensor,
    eta: float,
) -> torch.Tensor:
    """Per-sample loss: ``sum_m(0.5 CE_m^2 - eta p_m) + sum_m CE_m + CE_f`` if joint, else ``sum_m CE_m``."""
    uni = torch.stack(list(ce.values())).sum(0)
    modal = torch.stack([0.5 * ce[m] ** 2 - eta * penalties[m] for m in ce]).sum(0)
    return torch.where(joint, modal + uni + ce_fused, uni)


def mlp(dims: tuple[int, ...], final_relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2 or final_relu:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DomfnModel(nn.Module):
    """Encoders -> per-modality ``Fcn`` features -> sigmoid heads; sigmoid fusion MLP on the concatenated features."""

    def __init__(
        self, info: DatasetInfo, model_cfg: Any, hidden: tuple[int, ...], feature_dim: int, fusion_hidden: int
    ) -> None:
        super().__init__()
        self.modalities = tuple(info.modalities)
        self.encoders = nn.ModuleDict({m: build_encoder(info, model_cfg, m) for m in self.modalities})
        self.fcn = nn.ModuleDict(
            {m: mlp((int(self.encoders[m].out_dim), *hidden, feature_dim), final_relu=True) for m in self.modalities}
        )
        c = info.num_classes
        self.heads = nn.ModuleDict({m: nn.Linear(feature_dim, c) for m in self.modalities})
        self.fusion = mlp((feature_dim * len(self.modalities), fusion_hidden, c), final_relu=False)

    def forward(self, batch: Batch) -> ModelOutput:
        feats = {m: self.fcn[m](self.encoders[m](batch[m])) for m in self.modalities}
        scores = {m: torch.sigmoid(self.heads[m](f)) for m, f in feats.items()}
        fused = torch.sigmoid(self.fusion(torch.cat([feats[m] for m in self.modalities], dim=1)))
        return ModelOutput(logits=fused, features=feats, unimodal_logits=scores)


@register_method
class Domfn(Method):
    """DOMFN: sigmoid heads, divergence penalty, per-sample switch between joint and unimodal training."""

    name = "domfn"
    display = "DOMFN"
    paper_row = 4
    # Released configuration: Adam with weight decay 1e-3 (lrs 1e-5..1e-4 for fine-tuning pre-extracted
    # features, 1e-3 for the unimodal pre-training). From-scratch encoders use the pre-training lr.
    dataset_defaults = {
        "*": {"train.optimizer": "adam", "train.lr": 1e-3, "train.weight_decay": 1e-3, "train.scheduler": "none"},
        # Chosen on validation by the mini_tune grid (benchmark/suites/mini.py, scripts/select_mini.py):
        # method.eta in (0.1, 0.5) x train.lr in (0.0003, 0.001, 0.003).
        "av_digits": {"method.eta": 0.5, "train.lr": 0.0003},
    }

    @dataclass
    class Config(MethodConfig):
        gamma: float = 0.8
        eta: float = 0.5
        tau: float = 0.5
        # Epochs of unimodal pre-training (sum_m CE_m) at the start of the run (released config: 30).
        pre_epochs: int = 0
        # Divergence reference: the fused output (Paddle release, models/encoder.py:122-123 at 0f2ab8e) or the
        # mean of the unimodal outputs (PyTorch release, models/encoder.py:100-103 at 77743c2). With two
        # modalities the mean reference bounds p_m by 0.25, so p_m / tau < gamma always holds at the defaults.
        reference: Literal["mean", "fused"] = "fused"
        hidden: tuple[int, ...] = (512, 256)
        feature_dim: int = 128
        fusion_hidden: int = 64

        def validate(self) -> None:
            if self.tau <= 0:
                raise ValueError(f"method.tau must be > 0, got {self.tau}")
            if self.pre_epochs < 0:
                raise ValueError(f"method.pre_epochs must be >= 0, got {self.pre_epochs}")

    def build_model(self) -> nn.Module:
        c = self.cfg
        return DomfnModel(self.ctx.info, self.ctx.config.model, tuple(c.hidden), c.feature_dim, c.fusion_hidden)

    def setup(self) -> None:
        self.joint_fraction: list[dict[str, float]] = []
        self._joint_count = 0
        self._sample_count = 0

    def penalties(self, out: ModelOutput) -> dict[str, torch.Tensor]:
        ref = out.logits if self.cfg.reference == "fused" else None
        return divergence_penalty(out.unimodal_logits, ref)

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        self._joint_count = 0
        self._sample_count = 0

    def training_step(self, batch: Batch, step: int) -> dict[str, float]:
        y = batch["label"]
        out = self.forward(batch)
        ce = {m: F.cross_entropy(upcast(s), y, reduction="none") for m, s in out.unimodal_logits.items()}
        if self.epoch < self.cfg.pre_epochs:
            loss = torch.stack(list(ce.values())).sum(0).mean()
            joint = torch.zeros_like(y, dtype=torch.bool)
        else:
            pen = self.penalties(out)
            joint = joint_mask(pen, self.cfg.tau, self.cfg.gamma)
            if joint.any():
                ce_f = F.cross_entropy(upcast(out.logits), y, reduction="none")
                loss = domfn_loss(ce, ce_f, pen, joint, self.cfg.eta).mean()
            else:
                # Unimodal step: only the modality optimisers step (mosi_trainer.py:85-94). The loss leaves the
                # fusion head out of the graph, so its gradients stay unset and Adam skips it entirely (a zero
                # gradient would still move it through weight decay and the moment estimates).
                loss = torch.stack(list(ce.values())).sum(0).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        n_joint = joint.sum()  # a device tensor: read once per epoch in on_epoch_end, not per step
        self._joint_count = self._joint_count + n_joint
        self._sample_count += len(y)
        return {"loss": loss.detach(), "joint_frac": n_joint / len(y)}

    def on_epoch_end(self, epoch: int) -> None:
        joint = float(self._joint_count) / max(self._sample_count, 1)
        self.joint_fraction.append({"epoch": epoch + 1, "joint": joint})

    def predict(self, batch: Batch) -> ModelOutput:
        out = self.forward(batch)
        joint = joint_mask(self.penalties(out), self.cfg.tau, self.cfg.gamma)
        scores = torch.stack([out.unimodal_logits[m] for m in self.modalities])  # (M, B, C)
        best = scores.max(dim=2).values.argmax(dim=0)  # most confident modality per sample (first wins ties)
        fallback = scores[best, torch.arange(scores.shape[1], device=scores.device)]
        logits = torch.where(joint[:, None], out.logits, fallback)
        return ModelOutput(logits=logits, features=out.features, unimodal_logits=out.unimodal_logits)

    def extra_state(self) -> dict[str, Any]:
        return {"joint_fraction": list(self.joint_fraction)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.joint_fraction = list(state["joint_fraction"])

    def artifacts(self) -> dict[str, Any]:
        """Fraction of training samples that took the joint step, per epoch."""
        return {"joint_fraction": self.joint_fraction}
