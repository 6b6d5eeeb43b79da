"""Golden steps: ``ogm`` and ``ogm_ge`` against the released OGM-GE ``main.train_epoch`` (scripts/golden/ogm.py).

Nine SGD steps over three epochs (StepLR between them), float64, from identical weights and samples. The
modulation window is epoch 1 only, counted as ``main.py`` counts (from 0), so the run crosses both window
edges; inside it the stored coefficients span both branches (audio suppressed, visual suppressed).
"""

from __future__ import annotations

import pytest
import torch

from tests.golden.format import load_fixture
from tests.golden.harness import assert_close, run_from_fixture


def _modulated(fx) -> torch.Tensor:
    """Per step, whether its (0-based) epoch lies in the fixture's window."""
    over = fx.meta["suite_overrides"]
    steps = len(fx["trace/loss"])
    epoch = torch.arange(steps) // (steps // over["train.epochs"])
    return (epoch >= over["method.modulation_starts"]) & (epoch <= over["method.modulation_ends"])


@pytest.mark.parametrize("name", ["ogm", "ogm_ge"])
def test_steps_equal_the_released_code(name):
    fx = load_fixture(name)
    trace = fx.group("trace")
    inside = _modulated(fx)
    assert inside.any() and not inside.all(), "fixture must cross a window edge"
    assert (trace["k_audio"][inside] < 1).any() and (trace["k_visual"][inside] < 1).any(), "both branches"
    run = run_from_fixture(name, fx)
    values = {k: torch.tensor([s[k] for s in run.steps], dtype=torch.float64) for k in ("k_audio", "k_visual", "loss")}
    assert_close(values, {k: trace[k] for k in values}, what="per-step values")
    assert_close(run.state(), fx.group("final"))


@pytest.mark.parametrize(
    "change",
    [
        {"method.alpha": 0.7},
        {"method.modulation_starts": 0},  # epoch 0 modulated too: the window's first edge one epoch early
        {"method.modulation_ends": 2},  # epoch 2 modulated too: the last edge one epoch late
    ],
)
def test_a_changed_hyper_parameter_fails_the_comparison(change):
    fx = load_fixture("ogm")
    run = run_from_fixture("ogm", fx, change)
    with pytest.raises(AssertionError, match="largest relative differences"):
        assert_close(run.state(), fx.group("final"))
