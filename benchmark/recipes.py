"""Training recipes shared by several methods or datasets, written once and referenced by name.

A recipe is a dict of dotted ``train.*`` defaults; a method's ``dataset_defaults`` (or a dataset's
``train_defaults``) spreads it and adds what is its own, e.g. ``{**recipe("ogm_ge_sgd"), "train.epochs": 100}``.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    # OGM-GE main.py on CREMA-D / Kinetics-Sounds (baselines.md, OGM-GE): SGD lr 1e-3, momentum 0.9, weight decay
    # 1e-4, StepLR(70, 0.1), batch 64. AGM, PMR, MLA and MMPareto release the same optimiser set-up.
    "ogm_ge_sgd": {
        "train.optimizer": "sgd",
        "train.lr": 1e-3,
        "train.momentum": 0.9,
        "train.weight_decay": 1e-4,
        "train.scheduler": "step",
        "train.step_size": 70,
        "train.gamma": 0.1,
        "train.batch_size": 64,
    },
    # IGM's image-text configs (mie_igm.md 7): Adam lr 1e-5, betas (0.9, 0.99), weight decay 1e-4, batch 12; the
    # WarmupMultiStepLR milestones [160, 180] are never reached in a run, so no scheduler.
    "igm_image_text_adam": {
        "train.optimizer": "adam",
        "train.lr": 1e-5,
        "train.betas": (0.9, 0.99),
        "train.weight_decay": 1e-4,
        "train.batch_size": 12,
        "train.scheduler": "none",
    },
}


def recipe(name: str) -> dict[str, Any]:
    """A copy of the named recipe's dotted defaults."""
    if name not in RECIPES:
        raise KeyError(f"unknown training recipe {name!r}; benchmark/recipes.py defines {', '.join(sorted(RECIPES))}")
    return dict(RECIPES[name])
