"""MSES: modality-specific early stopping (Fujimori et al., ACPR 2019, "Modality-Specific Learning Rate
Control for Multimodal Classification").

What it does, the official defaults, every difference from the released code and the paper, and the tests:
`docs/methods/mses.md`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data import Batch
from benchmark.fusion import SumFusion
from benchmark.method import Method, eval_mode, upcast
from benchmark.models import FusionModel
from benchmark.registry import register_method
from methods.mslr import AgmWindowConfig


def smoothed_loss(current: float, previous: float | None, smoothing: float) -> float:
    """``s * previous + (1 - s) * current``; the first epoch (no previous raw loss) is not smoothed."""
    if previous is None:
        return current
    return smoothing * previous + (1.0 - smoothing) * current


@dataclass
class ModalityStopper:
    """Per-modality early-stopping bookkeeping (epochs are 1-based, as in the AGM code)."""

    patience: int
    smoothing: float = 0.6
    best_loss: float = float("inf")
    best_epoch: int = 0
    previous_raw: float | None = None
    stopped_at: int | None = None

    def update(self, epoch: int, raw_loss: float) -> tuple[bool, bool]:
        """Record the loss of ``epoch``; returns (new best, stop now)."""
        smooth = smoothed_loss(raw_loss, self.previous_raw, self.smoothing)
        self.previous_raw = raw_loss
        improved = smooth < self.best_loss
        if improved:
            self.best_loss, self.best_epoch = smooth, epoch
        stop = self.stopped_at is None and epoch - self.best_epoch > self.patience
        if stop:
            self.stopped_at = epoch
        return improved, stop


def _cpu_copy(state: Any) -> Any:
    if torch.is_tensor(state):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {k: _cpu_copy(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_cpu_copy(v) for v in state)
    return copy.deepcopy(state)


@register_method
class Mses(Method):
    """MSES: per-modality early stopping on each head's smoothed held-out loss (AGM re-implementation)."""

    name = "mses"
    display = "MSES"
    paper_row = 5
    train_defaults = {"model.fusion": "sum"}
    dataset_defaults = {
        # 6-epoch quick suite: the AGM patience (80 epochs) would never trigger.
        # Chosen on validation by the mini_tune grid (benchmark/suites/mini.py, scripts/select_mini.py):
        # train.lr in (0.003, 0.01, 0.03) x train.weight_decay in (0.0001, 0.001).
        "av_digits": {"method.patience": 2, "train.lr": 0.03, "train.weight_decay": 0.001},
    }

    @dataclass
    class Config(AgmWindowConfig):
        # Epochs without a new best smoothed loss before a modality stops (AGM code: > 80).
        patience: int = 80
        # Weight of the previous epoch's raw loss in the smoothed loss.
        smoothing: float = 0.6
        # Split on which the per-modality losses are measured (the AGM code used test).
        monitor_split: Literal["val", "test"] = "val"
        # official: reload the whole model + optimiser, zero the stopped grads; paper: restore and freeze
        # only the stopped modality.
        variant: Literal["official", "paper"] = "official"
        # modulation_starts / modulation_ends: AGM's window (AgmWindowConfig), epochs 1-20 counted from 1,
        # in which the official variant's gradient multipliers (0 for a stopped modality) act.

        def validate(self) -> None:
            super().validate()
            if self.patience < 0:
                raise ValueError(f"method.patience must be >= 0, got {self.patience}")
            if not 0.0 <= self.smoothing < 1.0:
                raise ValueError(f"method.smoothing must be in [0, 1), got {self.smoothing}")

    @classmethod
    def label(cls, cfg: Any) -> str:
        parts = [] if cfg.variant == "official" else ["paper"]
        if cfg.monitor_split == "test":
            parts.append("test-monitored")
        return f"mses[{','.join(parts)}]" if parts else "mses"

    def setup(self) -> None:
        fusion = getattr(self.model, "fusion", None)
        if not isinstance(self.model, FusionModel) or not isinstance(fusion, SumFusion):
            raise ValueError(
                "mses needs the late-fusion sum model (per-modality heads); "
                f"got model.fusion={self.ctx.config.model.fusion!r}. Use --set model.fusion=sum"
            )
        self.stoppers = {m: ModalityStopper(self.cfg.patience, self.cfg.smoothing) for m in self.modalities}
        # epoch (1-based) -> snapshot of model and optimiser state, kept while some modality's best epoch
        self.snapshots: dict[int, dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []

    def modality_parameters(self, m: str) -> list[nn.Parameter]:
        return [*self.model.encoders[m].parameters(), *self.model.fusion.fcs[m].parameters()]

    def modality_state_keys(self, m: str) -> list[str]:
        return [k for k in self.model.state_dict() if k.startswith((f"encoders.{m}.", f"fusion.fcs.{m}."))]

    @property
    def stopped(self) -> set[str]:
        return {m for m, s in self.stoppers.items() if s.stopped_at is not None}

    # -- training --------------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        if self.cfg.variant == "paper":
            for m in self.stopped:  # frozen exactly: no BatchNorm statistics updates either
                self.model.encoders[m].eval()

    def train_loader(self, epoch: int):
        if len(self.stopped) == len(self.modalities):
            return []  # every modality stopped: the AGM code exits here
        return super().train_loader(epoch)

    def training_step(self, batch: Batch, step: int) -> dict[str, float]:
        out = self.forward(batch)
        loss = F.cross_entropy(upcast(out.logits), batch["label"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        official = self.cfg.variant == "official"
        if not official or self.cfg.in_window(self.epoch):
            for m in self.stopped:
                for p in self.modality_parameters(m):
                    if official:
                        if p.grad is not None:
                            p.grad.zero_()  # x 0: momentum and weight decay still move it (CREMAD_main.py:219-226)
                    else:
                        p.grad = None
        self.optimizer.step()
        return {"loss": loss.detach()}

    @torch.no_grad()
    def modality_losses(self) -> dict[str, float]:
        """Mean cross-entropy of each modality's head on the monitored split (eval mode)."""
        sums = dict.fromkeys(self.modalities, 0.0)
        count = 0
        with eval_mode(self.model):
            for batch in self.ctx.batches(self.ctx.loader(self.cfg.monitor_split)):
                out = self.predict(batch)
                for m in self.modalities:
                    sums[m] += F.cross_entropy(upcast(out.unimodal_logits[m]), batch["label"], reduction="sum").item()
                count += len(batch["label"])
        return {m: s / count for m, s in sums.items()}

    def on_epoch_end(self, epoch: int) -> None:
        if len(self.stopped) == len(self.modalities):
            return
        e = epoch + 1
        losses = self.modality_losses()
        record: dict[str, Any] = {"epoch": e, "loss": losses, "stopped": []}
        newly_stopped = []
        for m in self.modalities:
            if self.stoppers[m].stopped_at is not None:
                continue
            improved, stop = self.stoppers[m].update(e, losses[m])
            if improved:
                self.snapshots[e] = {
                    "model": _cpu_copy(self.model.state_dict()),
                    "optimizer": _cpu_copy(self.optimizer.state_dict()),
                }
            if stop:
                newly_stopped.append(m)
        for m in newly_stopped:
            self.restore(m)
            record["stopped"].append(m)
        record["best_epoch"] = {m: s.best_epoch for m, s in self.stoppers.items()}
        self.history.append(record)
        needed = {s.best_epoch for s in self.stoppers.values() if s.stopped_at is None}
        self.snapshots = {k: v for k, v in self.snapshots.items() if k in needed}

    def restore(self, m: str) -> None:
        """Reload modality ``m``'s best epoch (the whole model and optimiser, or ``m``'s part only)."""
        snap = self.snapshots[self.stoppers[m].best_epoch]
        if self.cfg.variant == "official":
            self.model.load_state_dict(snap["model"])
            lrs = [g["lr"] for g in self.optimizer.param_groups]
            self.optimizer.load_state_dict(snap["optimizer"])
            for g, lr in zip(self.optimizer.param_groups, lrs):
                g["lr"] = lr
        else:
            current = self.model.state_dict()
            for key in self.modality_state_keys(m):
                current[key].copy_(snap["model"][key])
            for p in self.modality_parameters(m):
                self.optimizer.state.pop(p, None)

    # -- state -----------------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {
            "stoppers": {m: vars(s).copy() for m, s in self.stoppers.items()},
            "snapshots": self.snapshots,
            "history": self.history,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.stoppers = {m: ModalityStopper(**s) for m, s in state["stoppers"].items()}
        self.snapshots = {int(k): v for k, v in state["snapshots"].items()}
        self.history = list(state.get("history", []))

    def artifacts(self) -> dict[str, Any]:
        """Per epoch: each modality's monitored loss, best epoch, and which modality stopped."""
        stop = {m: s.stopped_at for m, s in self.stoppers.items()}
        return {"mses": {"epochs": self.history, "stopped_at": stop}}
