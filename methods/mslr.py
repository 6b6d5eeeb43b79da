"""MSLR: modality-specific learning rates (Yao & Mihalcea, Findings of ACL 2022), as re-implemented by AGM.

What it does, the official defaults, every difference from the released code and the paper, and the tests:
`docs/methods/mslr.md`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data import Batch
from benchmark.fusion import SumFusion
from benchmark.method import Method, MethodConfig
from benchmark.registry import register_method


@dataclass
class AgmWindowConfig(MethodConfig):
    """AGM's modulation window, shared by its MSLR and MSES re-implementations: the gradient multipliers act
    while ``modulation_starts <= epoch <= modulation_ends`` (``run/CREMAD_main.py:194, 211``; defaults 0 and 20,
    ``utils/config.py:74-75``) with AGM's epochs counted **from 1** (``CREMAD_main.py:611, 635``), so the
    default window is the first 20 epochs. ``in_window`` takes the trainer's 0-based epoch.
    """

    modulation_starts: int = 0
    modulation_ends: int = 20

    def validate(self) -> None:
        if self.modulation_starts > self.modulation_ends:
            raise ValueError(
                f"method.modulation_starts ({self.modulation_starts}) must not exceed "
                f"method.modulation_ends ({self.modulation_ends})"
            )

    def in_window(self, epoch: int) -> bool:
        """Whether the trainer's (0-based) ``epoch`` is inside the window, AGM's epoch ``epoch + 1``."""
        return self.modulation_starts <= epoch + 1 <= self.modulation_ends


def base_coefficients(modalities: tuple[str, ...], low: float = 0.9, high: float = 1.1) -> dict[str, float]:
    """Evenly spaced from ``low`` (first modality) to ``high`` (last); two modalities give (0.9, 1.1)."""
    n = len(modalities)
    if n == 1:
        return {modalities[0]: 1.0}
    return {m: low + (high - low) * i / (n - 1) for i, m in enumerate(modalities)}


def accuracy_ratio(history: list[float], window: int) -> float:
    """``acc(latest) / mean(acc over the ``window`` epochs before it)``; 1.0 while the window is incomplete."""
    if len(history) <= window:
        return 1.0
    previous = history[-1 - window : -1]
    mean = sum(previous) / window
    if mean <= 0.0:
        return 1.0  # an all-zero window carries no signal (and would divide by zero)
    return history[-1] / mean


@register_method
class Mslr(Method):
    """MSLR (AGM re-implementation): per-modality gradient multipliers c_m * acc_m / mean(acc_m, last 5 epochs)."""

    name = "mslr"
    display = "MSLR"
    paper_row = 8
    # AGM runs MSLR on its summation late-fusion model (AVClassifier_Sum).
    dataset_defaults = {
        "*": {"model.fusion": "sum"},
        # av_digits runs are short (6 epochs in the quick suite): a 2-epoch window lets the ratios act.
        # Chosen on validation by the mini_tune grid (benchmark/suites/mini.py, scripts/select_mini.py):
        # train.lr in (0.003, 0.01, 0.03) x train.weight_decay in (0.0001, 0.001).
        "av_digits": {"method.window": 2, "train.lr": 0.003, "train.weight_decay": 0.0001},
        # AGM's CREMA-D setting (SGD momentum 0.9, wd 1e-4, StepLR(70, 0.1)).
        "crema_d": {
            "train.optimizer": "sgd",
            "train.momentum": 0.9,
            "train.weight_decay": 1e-4,
            "train.scheduler": "step",
            "train.step_size": 70,
            "train.gamma": 0.1,
        },
    }

    @dataclass
    class Config(AgmWindowConfig):
        # Number of past epochs whose mean accuracy is the reference of the ratio (AGM: 5).
        window: int = 5
        # Split whose per-modality accuracy drives the ratios: val (ours) or test (AGM's code).
        acc_split: Literal["val", "test"] = "val"
        # official: every modality's ratio from the last modality's accuracy (AGM's test() counts the audio
        # accuracy from the visual prediction, CREMAD_main.py:402-404); corrected: each modality's own.
        accuracy: Literal["official", "corrected"] = "official"
        # modality -> base coefficient; empty = evenly spaced 0.9 .. 1.1 in the dataset's modality order.
        coefficients: dict[str, float] = field(default_factory=dict)
        # modulation_starts / modulation_ends: AGM's window (AgmWindowConfig), epochs 1-20 counted from 1.

        def validate(self) -> None:
            super().validate()
            if self.window < 1:
                raise ValueError(f"method.window must be >= 1, got {self.window}")
            bad = {m: c for m, c in self.coefficients.items() if c < 0}
            if bad:
                raise ValueError(f"method.coefficients must be >= 0, got {bad}")

    @classmethod
    def label(cls, cfg: Any) -> str:
        parts = (["test-acc"] if cfg.acc_split == "test" else []) + (
            ["corrected-acc"] if cfg.accuracy == "corrected" else []
        )
        return f"mslr[{','.join(parts)}]" if parts else "mslr"

    def setup(self) -> None:
        unknown = set(self.cfg.coefficients) - set(self.modalities)
        if unknown:
            raise ValueError(
                f"method.coefficients names {sorted(unknown)}, not modalities of {self.ctx.info.name!r} "
                f"({', '.join(self.modalities)})"
            )
        self.coefficients = {**base_coefficients(self.modalities), **self.cfg.coefficients}
        self.ratios = {m: 1.0 for m in self.modalities}
        self.acc_history: dict[str, list[float]] = {m: [] for m in self.modalities}
        self.multiplier_history: list[dict[str, float]] = []
        self.groups = self._modality_parameters()

    def _modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Modality m's encoder plus, with the sum head, its own classifier (AGM's ``*_net`` and ``*_cls``)."""
        model = self.model
        groups = {m: list(model.encoders[m].parameters()) for m in self.modalities}
        if isinstance(model.fusion, SumFusion):
            for m in self.modalities:
                groups[m] += list(model.fusion.fcs[m].parameters())
        return groups

    def multipliers(self) -> dict[str, float]:
        """``c_m * r_m``: the multipliers of the epoch after the latest evaluation, inside the window."""
        return {m: self.coefficients[m] * self.ratios[m] for m in self.modalities}

    def training_step(self, batch: Batch, step: int) -> dict[str, float]:
        out = self.forward(batch)
        loss = F.cross_entropy(out.logits, batch["label"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.in_window(self.epoch):
            mult = self.multipliers()
            with torch.no_grad():
                for m, params in self.groups.items():
                    grads = [p.grad for p in params if p.grad is not None]
                    if grads:
                        torch._foreach_mul_(grads, mult[m])
        else:  # outside AGM's window: plain gradients (CREMAD_main.py:227-232)
            mult = dict.fromkeys(self.modalities, 1.0)
        self.optimizer.step()
        return {"loss": loss.detach(), **{f"mult_{m}": v for m, v in mult.items()}}

    def on_evaluation_end(self, epoch: int, metrics: dict[str, dict[str, float]]) -> None:
        split = metrics[self.cfg.acc_split]
        for m in self.modalities:
            source = m if self.cfg.accuracy == "corrected" else self.modalities[-1]
            self.acc_history[m].append(float(split[f"acc_{source}"]))
            self.ratios[m] = accuracy_ratio(self.acc_history[m], self.cfg.window)
        self.multiplier_history.append({"epoch": epoch + 1, **self.multipliers()})

    def extra_state(self) -> dict[str, Any]:
        return {
            "ratios": dict(self.ratios),
            "acc_history": {m: list(v) for m, v in self.acc_history.items()},
            "multiplier_history": list(self.multiplier_history),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.ratios = dict(state["ratios"])
        self.acc_history = {m: list(v) for m, v in state["acc_history"].items()}
        self.multiplier_history = list(state["multiplier_history"])

    def artifacts(self) -> dict[str, Any]:
        """Per-epoch multipliers (applied in the epoch after) and the accuracies that produced them."""
        return {"multipliers": self.multiplier_history, "acc_history": self.acc_history}
