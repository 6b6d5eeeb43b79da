"""Golden steps: ``agm`` against the released AGM ``run/CREMAD_main.py:train`` (scripts/golden/agm.py).

Nine SGD steps over three epochs (StepLR between them), float64, from identical weights and samples. The released
loop numbers its epochs from 1 and the window is its epoch 2 (the suite's epoch 1), so the run crosses both window
edges: κ is 1 before it, updated every step inside it, and the last κ stays in force after it. The per-step κ, the
Shapley scores, the losses, the cumulative mean scores, the parameters and the buffers are compared.
"""

from __future__ import annotations

import pytest
import torch

from tests.golden.format import load_fixture
from tests.golden.harness import assert_close, run_from_fixture

PER_STEP = ("kappa_audio", "kappa_visual", "score_audio", "score_visual", "loss")


def test_steps_equal_the_released_code():
    fx = load_fixture("agm")
    trace = fx.group("trace")
    steps = len(trace["loss"]) // 3
    before, inside, after = (slice(i * steps, (i + 1) * steps) for i in range(3))
    # the fixture spans what matters: no κ before the window, κ above and below 1 inside it, the last κ kept
    # after it, and one step whose fusion-weight gradient left [-1, 1] (clipped to norm 1)
    assert (trace["kappa_audio"][before] == 1).all() and (trace["kappa_visual"][before] == 1).all()
    for m in ("audio", "visual"):
        k = trace[f"kappa_{m}"]
        assert (k[inside] > 1).any() and (k[inside] < 1).any()
        assert (k[after] == k[inside][-1]).all()
    assert trace["clipped"].any() and not trace["clipped"].all()

    run = run_from_fixture("agm", fx)
    values = {k: torch.tensor([s[k] for s in run.steps], dtype=torch.float64) for k in PER_STEP}
    assert_close(values, {k: trace[k] for k in PER_STEP}, what="per-step values")
    means = {
        f"mean_score_{m}": torch.tensor(run.method.mean_scores[m], dtype=torch.float64) for m in ("audio", "visual")
    }
    assert_close(means, {k: trace[k] for k in means}, what="cumulative mean scores")
    assert_close(run.state(), fx.group("final"))


@pytest.mark.parametrize(
    "change",
    [
        {"method.alpha": 0.4},
        # the window counted from 0 (the suite before #12): κ applied one epoch early and dropped one epoch early
        {"method.modulation_starts": 1, "method.modulation_ends": 1},
    ],
)
def test_a_changed_hyper_parameter_fails_the_comparison(change):
    fx = load_fixture("agm")
    run = run_from_fixture("agm", fx, change)
    with pytest.raises(AssertionError, match="largest relative differences"):
        assert_close(run.state(), fx.group("final"))
