"""Joint training: the plain multimodal baseline of every paper in this suite."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from benchmark.data import Batch
from benchmark.method import Method
from benchmark.models import apply_official_init
from benchmark.registry import register_method


@register_method
class Joint(Method):
    """Joint training: cross-entropy on the fused logits of the model.fusion head (concat, sum, FiLM, gated)."""

    name = "joint"
    display = "Baseline"
    paper_row = 1
    dataset_defaults = {
        # Chosen on validation by the mini_tune grid (benchmark/suites/mini.py, scripts/select_mini.py):
        # train.lr in (0.003, 0.01, 0.03) x train.weight_decay in (0.0001, 0.001).
        "av_digits": {"train.lr": 0.03, "train.weight_decay": 0.0001},
    }

    def build_model(self) -> nn.Module:
        """The fusion model, initialised as OGM-GE's ``Normal`` path (``--modulation Normal``): ``main.py``
        applies ``model.apply(weight_init)`` whatever the modulation (xavier-normal heads, zero bias)."""
        return apply_official_init(super().build_model())

    def training_step(self, batch: Batch, step: int) -> dict[str, float]:
        out = self.forward(batch)
        loss = F.cross_entropy(out.logits, batch["label"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach()}
