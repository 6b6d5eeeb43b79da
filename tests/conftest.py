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


def train_briefly(method: str, epochs: int = 1, seed: int = 0, store: ResultStore | None = None, **overrides: Any):
    """Train ``method`` on av_digits for ``epochs`` and return the result row."""
    from benchmark.trainer import fit

    return fit(short_config(method, epochs, seed, **overrides), store, progress=False)


@pytest.fixture
def store(tmp_path) -> ResultStore:
    return ResultStore(tmp_path / "results")
