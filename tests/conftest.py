"""Shared fixtures: short runs on the embedded dataset and a result store in a temporary directory."""

from __future__ import annotations

from typing import Any

import pytest

from benchmark.config import RunConfig, build_config
from benchmark.results import ResultStore

CHANCE_AV_DIGITS = 0.1  # 10 balanced classes


def short_config(method: str, epochs: int = 1, seed: int = 0, **overrides: Any) -> RunConfig:
    """A config for ``method`` on av_digits that trains briefly and keeps no checkpoint."""
    return build_config(
        method,
        "av_digits",
        seed,
        {"train.epochs": epochs, "train.checkpoint": False, "train.save_model": False, **overrides},
    )


def first_batch(method: Any, split: str = "train", **loader_kwargs: Any) -> dict[str, Any]:
    """The first batch of ``split`` (``ctx.loader`` keywords: shuffle, batch_size, ...) on the method's device."""
    return next(iter(method.ctx.batches(method.ctx.loader(split, **loader_kwargs), 1)))


def method_and_batch(method: str, epochs: int = 1, seed: int = 0, **overrides: Any) -> tuple[Any, dict[str, Any]]:
    """The built run's method on av_digits (model, optimiser, ``setup`` done; seeded) and its first training
    batch."""
    from benchmark.trainer import build_run

    built = build_run(short_config(method, epochs, seed, **overrides)).method
    return built, first_batch(built)


def train_briefly(method: str, epochs: int = 1, seed: int = 0, store: ResultStore | None = None, **overrides: Any):
    """Train ``method`` on av_digits for ``epochs`` and return the result row."""
    from benchmark.trainer import fit

    return fit(short_config(method, epochs, seed, **overrides), store, progress=False)


@pytest.fixture
def store(tmp_path) -> ResultStore:
    return ResultStore(tmp_path / "results")
