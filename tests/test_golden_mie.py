"""Golden steps: ``mie`` and ``mie_no_sam`` against the released IGM ``train_CREMA.py`` (scripts/golden/mie.py).

Three stages (audio, visual, audio) of two epochs of three SGD steps, float64, from identical weights and
samples: the per-tensor SAM perturbation at rho = 0.05 (``mie``), the 0.7/0.3 loss, mixup (the released draws
replayed through ``Mie.mixup_draw``), the T matrices built between stages and the gradient modification, a fresh
optimiser and StepLR per stage, and every stage's restart from the best-on-test checkpoint so far
(``restart_select=test_official``, the released rule; the suite's default selects on validation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from methods import mie
from tests.golden.format import Fixture, load_fixture
from tests.golden.harness import GoldenRun, assert_close, run_from_fixture


def replayed_draws(trace: dict[str, torch.Tensor]) -> Callable[[int, float], tuple[float, torch.Tensor]]:
    """The released ``mixup_data`` draws (``np.random.beta``, ``torch.randperm``), in the order it made them."""
    draws = iter(zip(trace["lam_bits"].view(torch.float64).tolist(), trace["perm"]))

    def draw(batch_size: int, alpha: float) -> tuple[float, torch.Tensor]:
        lam, perm = next(draws)
        assert len(perm) == batch_size
        return lam, perm.clone()

    return draw


def run_mie(name: str, fx: Fixture, overrides: dict[str, Any] | None = None) -> tuple[GoldenRun, dict[str, Any]]:
    """The suite's run from the fixture, with what the released trace holds captured along the way: per stage
    T and the eigenvalues of the moment, per epoch the test macro-F1, and the epoch each stage restarted from."""
    seen: dict[str, Any] = {"T": {}, "f1": [], "restarts": [], "best_epoch": 0}

    def prepare(m: mie.Mie) -> None:
        m.mixup_draw = replayed_draws(fx.group("trace"))
        build_T, begin, on_eval = m.build_T, m._begin_stage, m.on_evaluation_end

        def build_T_recorded(source: str, current: str, epoch: int) -> None:
            build_T(source, current, epoch)
            stage = m._stage + 1  # the released stage number
            for layer, t in m.T.items():
                seen["T"][f"T{stage}/{layer}"] = t.clone()
            for layer, lam in m._art["singular_values"][source].items():
                seen["T"][f"singular_values{stage}/{layer}"] = torch.tensor(lam, dtype=torch.float64)

        def begin_recorded(stage: mie.Stage, epoch: int) -> None:
            seen["restarts"].append(seen["best_epoch"])
            begin(stage, epoch)

        def on_eval_recorded(epoch: int, metrics: dict[str, dict[str, float]]) -> None:
            before = m._best_value
            on_eval(epoch, metrics)
            seen["f1"].append(metrics["test"]["macro_f1"])
            if m._best_value != before:
                seen["best_epoch"] = epoch + 1

        m.build_T, m._begin_stage, m.on_evaluation_end = build_T_recorded, begin_recorded, on_eval_recorded

    return run_from_fixture(name, fx, overrides, prepare), seen


@pytest.mark.parametrize("name", ["mie", "mie_no_sam"])
def test_three_stages_equal_the_released_code(name):
    fx = load_fixture(name)
    trace = fx.group("trace")
    restarts = trace["restart_epoch"].tolist()
    ends = [2, 4]  # last epoch of stages 1 and 2
    assert any(r != e for r, e in zip(restarts, ends)), "fixture must restart from an earlier epoch at least once"
    run, seen = run_mie(name, fx)
    assert seen["restarts"] == restarts
    f1 = torch.tensor(seen["f1"], dtype=torch.float64)
    assert_close({"test_macro_f1": f1}, {"test_macro_f1": trace["test_macro_f1"]}, what="macro-F1")
    loss = torch.tensor([s["loss"] for s in run.steps], dtype=torch.float64)
    assert_close({"loss": loss}, {"loss": trace["loss"]}, what="loss")
    released_T = {k: v for k, v in trace.items() if k.startswith(("T", "singular_values"))}
    assert len(released_T) == 12  # T and eigenvalues of fc1-fc3, built before stages 2 and 3
    assert_close(seen["T"], released_T, what="T")
    assert_close(run.state(), fx.group("final"))


def test_a_changed_hyper_parameter_fails_the_comparison():
    fx = load_fixture("mie_no_sam")
    run, _ = run_mie("mie_no_sam", fx, {"method.tau": 0.5})
    with pytest.raises(AssertionError, match="largest relative differences"):
        assert_close(run.state(), fx.group("final"))


def test_an_in_place_perturbation_fails_the_comparison(monkeypatch):
    """Issue #12 item 4: ``p.data.add_`` (perturbing the weights nn.Linear saved for backward as well) is not
    the released ``p.data = p.data + noise``; at rho = 0.05 the final state differs."""

    @torch.no_grad()
    def in_place(params, grads, rho):
        for p, g in zip(params, grads):
            if g is not None and g.norm() > 0:
                p.data.add_(g * (rho / g.norm()))

    monkeypatch.setattr(mie, "perturb_per_tensor_", in_place)
    fx = load_fixture("mie")
    run, _ = run_mie("mie", fx)
    with pytest.raises(AssertionError, match="largest relative differences"):
        assert_close(run.state(), fx.group("final"))
