"""Golden steps: ``ogm`` and ``ogm_ge`` against the released OGM-GE ``main.train_epoch`` (scripts/golden/ogm.py).

Six SGD steps over two epochs (StepLR between them), float64, from identical weights and samples; the stored
per-step coefficients span both branches (visual suppressed, audio suppressed).
"""

from __future__ import annotations

import pytest
import torch

from tests.golden.format import load_fixture
from tests.golden.harness import assert_close, run_from_fixture


@pytest.mark.parametrize("name", ["ogm", "ogm_ge"])
def test_steps_equal_the_released_code(name):
    fx = load_fixture(name)
    trace = fx.group("trace")
    assert (trace["k_audio"] < 1).any() and (trace["k_visual"] < 1).any(), "fixture must span both branches"
    run = run_from_fixture(name, fx)
    k = {m: torch.tensor([s[f"k_{m}"] for s in run.steps], dtype=torch.float64) for m in ("audio", "visual")}
    assert_close({"k_audio": k["audio"], "k_visual": k["visual"]}, {n: trace[n] for n in ("k_audio", "k_visual")})
    assert_close(run.state(), fx.group("final"))


def test_a_changed_hyper_parameter_fails_the_comparison():
    fx = load_fixture("ogm")
    run = run_from_fixture("ogm", fx, {"method.alpha": 0.7})
    with pytest.raises(AssertionError, match="largest relative differences"):
        assert_close(run.state(), fx.group("final"))
