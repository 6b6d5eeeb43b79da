"""Golden steps: ``mmpareto`` against the released ``code/MMPareto.py:train_epoch`` (scripts/golden/mmpareto.py).

Six SGD steps over two epochs (the released scheduler is never stepped), float64, from identical weights and
samples: every parameter and BatchNorm buffer, the per-step losses and the Pareto weights of both encoders, which
span the conflicting (min-norm) and the agreeing (1/2, 1/2) branch.
"""

from __future__ import annotations

import pytest
import torch

from tests.golden.format import load_fixture
from tests.golden.harness import assert_close, run_from_fixture

STEP_KEYS = ("loss_mm", "loss_audio", "loss_visual", "k_mm_audio", "k_mm_visual")


def test_steps_equal_the_released_code():
    fx = load_fixture("mmpareto")
    trace = fx.group("trace")
    for m in ("audio", "visual"):
        k = trace[f"k_mm_{m}"]
        assert (k == 0.5).any() and (k != 0.5).any(), f"the {m} weights must span both branches"
        assert torch.equal(trace[f"cos_{m}"] > 0, k == 0.5)
        assert torch.allclose(k + trace[f"k_uni_{m}"], torch.ones_like(k))
    run = run_from_fixture("mmpareto", fx)
    steps = {k: torch.tensor([s[k] for s in run.steps], dtype=torch.float64) for k in STEP_KEYS}
    assert_close(steps, {k: trace[k] for k in STEP_KEYS}, what="per-step values")
    assert_close(run.state(), fx.group("final"))


def test_a_changed_hyper_parameter_fails_the_comparison():
    fx = load_fixture("mmpareto")
    run = run_from_fixture("mmpareto", fx, {"method.gamma": 1.4})
    with pytest.raises(AssertionError, match="largest relative differences"):
        assert_close(run.state(), fx.group("final"))
