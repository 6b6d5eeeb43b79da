"""Unimodal baselines: one modality's encoder and a linear classifier, trained alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from benchmark.data import DatasetInfo
from benchmark.method import MethodConfig
from benchmark.models import UnimodalModel, apply_official_init, build_encoder
from benchmark.registry import register_method
from methods.joint import Joint


@register_method
class Unimodal(Joint):
    """One modality trained alone (the Unimodal rows); a suite runs it once per modality.

    The training step is joint training's (cross-entropy of the logits); only the model differs.
    """

    name = "unimodal"
    display = "Unimodal"
    paper_row = 0
    # Keep the weights: ReconBoost initialises its learners from the unimodal runs.
    train_defaults = {"train.save_model": True}
    dataset_defaults = {
        # Chosen on validation by the mini_tune grid (benchmark/suites/mini.py, scripts/select_mini.py):
        # train.lr in (0.003, 0.01, 0.03) x train.weight_decay in (0.0001, 0.001).
        "av_digits": {"train.lr": 0.01, "train.weight_decay": 0.0001},
    }

    @dataclass
    class Config(MethodConfig):
        # Modality to train; "" = the dataset's first modality.
        modality: str = ""

    @classmethod
    def expand(cls, info: DatasetInfo) -> list[dict[str, Any]]:
        return [{"method.modality": m} for m in info.modalities]

    @classmethod
    def label(cls, cfg: Any) -> str:
        return f"unimodal_{cfg.modality}" if cfg.modality else "unimodal"

    @classmethod
    def row_facts(cls, cfg: Any) -> dict[str, Any]:
        """Every Unimodal row heads Table 1: ``unimodal_audio`` shows as ``Unimodal (audio)``."""
        shown = f"Unimodal ({cfg.modality})" if cfg.modality else "Unimodal"
        return {"display": shown, "paper_row": cls.paper_row, "proposed": False, "ablation": ""}

    @property
    def modality(self) -> str:
        m = self.cfg.modality or self.ctx.info.modalities[0]
        if m not in self.ctx.info.modalities:
            raise ValueError(
                f"method.modality={m!r} is not a modality of {self.ctx.info.name!r}; "
                f"choose one of {', '.join(self.ctx.info.modalities)}"
            )
        return m

    def build_model(self) -> nn.Module:
        """Encoder + linear classifier, initialised as AGM's unimodal path (``--modality Audio/Visual``:
        ``AClassify``/``VClassify``, then ``model.apply(weight_init)`` in ``run/CREMAD_main.py``), which is
        OGM-GE's ``weight_init`` except for the conv kernels (the shared Kaiming-normal init is kept here)."""
        m = self.modality
        model = UnimodalModel(m, build_encoder(self.ctx.info, self.ctx.config.model, m), self.ctx.info.num_classes)
        return apply_official_init(model)
