"""Golden steps: ``pmr`` against the released PMR ``main_Prototype_grad.py`` (scripts/golden/pmr.py).

Eight SGD steps over four epochs (StepLR between them), float64, from identical weights and samples, with the
prototype passes around them (before the first epoch and after each; momentum from the update after epoch 1
on). The PCE window is epochs 1-2, counted as the released loop counts (from 0), so the run crosses both window
edges; inside it both branches occur (PCE on audio, PCE on visual). Compared: every set of prototypes, the
per-step losses, prototype ratios and PCE weights, the parameters and the buffers.
"""

from __future__ import annotations

import pytest
import torch

from tests.golden.format import load_fixture
from tests.golden.harness import assert_close, run_from_fixture


def _window(fx) -> torch.Tensor:
    over = fx.meta["suite_overrides"]
    steps = len(fx["trace/loss"])
    epoch = torch.arange(steps) // (steps // over["train.epochs"])
    return (epoch >= over["method.modulation_starts"]) & (epoch <= over["method.modulation_ends"])


def _run(fx, change=None):
    protos: dict[str, list[torch.Tensor]] = {"audio": [], "visual": []}

    def prepare(method) -> None:
        update = method.update_prototypes

        def recorded(epoch: int) -> None:
            update(epoch)
            for m in protos:
                protos[m].append(method.prototypes[m].detach().clone())

        method.update_prototypes = recorded

    run = run_from_fixture("pmr", fx, change, prepare=prepare)
    return run, {f"prototypes_{m}": torch.stack(p) for m, p in protos.items()}


def test_steps_equal_the_released_code():
    fx = load_fixture("pmr")
    trace = fx.group("trace")
    inside = _window(fx)
    assert inside.any() and not inside.all(), "fixture must cross a window edge"
    assert (trace["beta_audio"][inside] > 0).any() and (trace["beta_visual"][inside] > 0).any(), "both branches"

    run, prototypes = _run(fx)
    assert_close(prototypes, {k: trace[k] for k in prototypes}, what="prototypes")
    assert_close(
        {"loss": torch.tensor([s["loss"] for s in run.steps], dtype=torch.float64)},
        {"loss": trace["loss"]},
        what="loss",
    )
    # the suite reports the ratio and PCE weights only where they act (inside the window)
    reported = [s for s in run.steps if "ratio" in s]
    assert len(reported) == int(inside.sum())
    values = {
        k: torch.tensor([s[k] for s in reported], dtype=torch.float64) for k in ("ratio", "beta_audio", "beta_visual")
    }
    assert_close(values, {k: trace[k][inside] for k in values}, what="per-step values")
    assert_close(run.state(), fx.group("final"))


@pytest.mark.parametrize(
    "change",
    [
        {"method.momentum": 0.2},  # the argparse default: prototypes after epoch 1 differ
        {"method.modulation_ends": 3},  # PCE one epoch longer
    ],
)
def test_a_changed_hyper_parameter_fails_the_comparison(change):
    fx = load_fixture("pmr")
    run, _ = _run(fx, change)
    with pytest.raises(AssertionError, match="largest relative differences"):
        assert_close(run.state(), fx.group("final"))
