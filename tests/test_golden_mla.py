"""Golden steps: ``mla`` against the released MLA ``main.train_epoch`` (``gs_flag``) and ``main.valid`` (``--dynamic``)
(scripts/golden/mla.py).

Six alternating steps (audio then visual through the shared head, an optimiser step each) over two epochs
(StepLR between them), float64, from identical weights and samples; after each epoch the test-time entropy
fusion (released ``calculate_gating_weights`` over the whole test batch) and the fused logits.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from benchmark.method import Method
from tests.golden.format import load_fixture
from tests.golden.harness import assert_close, run_from_fixture


def _record_predictions(store: list) -> Callable[[Method], None]:
    def prepare(method: Method) -> None:
        predict = method.predict

        def recorded(batch):
            out = predict(batch)
            uni = [out.unimodal_logits[m] for m in method.modalities]
            store.append((out.logits.detach().clone(), method.fusion_weights(uni).detach().clone()))
            return out

        method.predict = recorded  # type: ignore[method-assign]

    return prepare


def test_steps_and_fusion_equal_the_released_code():
    fx = load_fixture("mla")
    trace = fx.group("trace")
    predictions: list = []
    run = run_from_fixture("mla", fx, prepare=_record_predictions(predictions))
    steps = {k: torch.tensor([s[k] for s in run.steps], dtype=torch.float64) for k in ("loss_audio", "loss_visual")}
    assert_close(steps, {k: trace[k] for k in steps}, what="losses")
    assert_close(run.state(), fx.group("final"))
    # The trainer evaluates val, then test, after every epoch (the same samples, one batch each).
    test = predictions[1::2]
    assert len(test) == len(trace["eval_acc"])
    weights, logits = torch.stack([w for _, w in test]), torch.stack([lg for lg, _ in test])
    assert_close(
        {"fusion_w_audio": weights[:, 0], "fusion_w_visual": weights[:, 1], "eval_logits": logits},
        {k: trace[k] for k in ("fusion_w_audio", "fusion_w_visual", "eval_logits")},
        what="evaluation",
    )
    assert (weights[:, 0] - weights[:, 1]).abs().min() > 0.5, "fixture should weigh the modalities unequally"
    for key, col in (("eval_acc", "test_acc[last]"), ("eval_acc_audio", "test_acc_audio[last]")):
        assert run.row[col] == pytest.approx(float(trace[key][-1]), abs=1e-6)


def test_a_changed_hyper_parameter_fails_the_comparison():
    fx = load_fixture("mla")
    run = run_from_fixture("mla", fx, {"train.gamma": 0.4})
    with pytest.raises(AssertionError, match="largest relative differences"):
        assert_close(run.state(), fx.group("final"))
