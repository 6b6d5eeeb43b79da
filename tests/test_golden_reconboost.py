"""Golden steps: ``reconboost`` from scratch against the released ``train.main`` (scripts/golden/reconboost.py).

Two stages (audio, then visual), each one phase-1 epoch and one rectification epoch of three steps, float64, from
identical weights and samples: every parameter and BatchNorm buffer of both learners (running statistics and
``num_batches_tracked``: the previous learner runs twice per phase-1 step), the shared head and the boost rate;
per step the boosting loss (stage 0: the released constant ensemble, q_y = 1), the MSE term and the
rectification loss; the test accuracy after the last stage.
"""

from __future__ import annotations

import pytest
import torch

from tests.golden.format import load_fixture
from tests.golden.harness import assert_close, run_from_fixture


def _per_step(run) -> dict[str, torch.Tensor]:
    def values(key: str, marker: str) -> torch.Tensor:
        return torch.tensor([s[key] for s in run.steps if marker in s], dtype=torch.float64)

    return {
        "boost_loss": values("boost_loss", "boost_loss"),
        "ga_loss": values("ga_loss", "ga_loss"),
        "rectify_loss": values("loss", "boost_rate"),  # phase-2 steps report the boost rate
    }


def test_two_stages_equal_the_released_code():
    fx = load_fixture("reconboost")
    trace, final = fx.group("trace"), fx.group("final")
    tracked = {k: int(v) for k, v in final.items() if k.endswith("bn1.num_batches_tracked") and "layer" not in k}
    assert tracked == {  # audio: 3 + 3 + (3 + 3) + 3 forwards in train mode; visual: stage 1 only
        "learners.audio.encoder.trunk.bn1.num_batches_tracked": 15,
        "learners.visual.encoder.trunk.bn1.num_batches_tracked": 6,
    }
    run = run_from_fixture("reconboost", fx)
    assert_close(_per_step(run), {k: trace[k] for k in ("boost_loss", "ga_loss", "rectify_loss")}, what="losses")
    assert_close(run.state(), final)
    assert run.row["test_acc[last]"] == pytest.approx(float(trace["test_acc"][-1]), abs=1e-6)


def test_a_changed_hyper_parameter_fails_the_comparison():
    fx = load_fixture("reconboost")
    run = run_from_fixture("reconboost", fx, {"method.w2": 0.9})
    with pytest.raises(AssertionError, match="largest relative differences"):
        assert_close(run.state(), fx.group("final"))
