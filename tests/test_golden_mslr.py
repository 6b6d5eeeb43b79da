"""Golden steps: ``mslr`` against the AGM authors' MSLR (``run/CREMAD_main.py``; scripts/golden/mslr_mses.py).

Eight epochs of one SGD step (float64, identical weights and batches) through the released ``CREMAD_main``:
the accuracy memory fills in epochs 1-5, the ratio computed after epoch 6 scales epoch 7's gradients, and AGM's
window (``modulation_ends=7``, epochs counted from 1) leaves epoch 8 unscaled. The audio accuracy that AGM's
``test()`` returns is the visual one (``CREMAD_main.py:402-404``), so both ratios are equal: ``accuracy=official``.
"""

from __future__ import annotations

import pytest
import torch

from tests.golden.format import load_fixture
from tests.golden.harness import assert_close, run_from_fixture


def _expected_multipliers(fx) -> dict[str, torch.Tensor]:
    """Per step the released gradient multipliers: 0.9 r_a and 1.1 r_v inside the window, else 1."""
    o, trace = fx.meta["suite_overrides"], fx.group("trace")
    steps = len(fx["data/label"]) // o["train.batch_size"]
    out = {}
    for m, c in (("audio", 0.9), ("visual", 1.1)):
        per_epoch = [
            c * r if o["method.modulation_starts"] <= e <= o["method.modulation_ends"] else 1.0
            for e, r in enumerate(trace[f"ratio_{m}"].tolist(), start=1)  # AGM counts epochs from 1
        ]
        out[f"mult_{m}"] = torch.tensor(per_epoch, dtype=torch.float64).repeat_interleave(steps)
    return out


def test_fixture_spans_the_ratio_and_the_window_edge():
    fx = load_fixture("mslr")
    o, trace = fx.meta["suite_overrides"], fx.group("trace")
    ends, epochs = o["method.modulation_ends"], o["train.epochs"]
    assert ends < epochs and trace["ratio_audio"][ends - 1] != 1.0  # a ratio acts in the window's last epoch
    assert torch.equal(trace["ratio_audio"], trace["ratio_visual"])  # AGM's audio accuracy is the visual one
    assert torch.equal(trace["acc_audio"], trace["acc_visual"])


def test_steps_equal_the_released_code():
    fx = load_fixture("mslr")
    run = run_from_fixture("mslr", fx)
    mult = {k: torch.tensor([s[k] for s in run.steps], dtype=torch.float64) for k in ("mult_audio", "mult_visual")}
    assert_close(mult, _expected_multipliers(fx), what="multipliers")
    history = {f"acc_{m}": torch.tensor(v, dtype=torch.float64) for m, v in run.method.acc_history.items()}
    trace = fx.group("trace")
    assert_close(history, {k: trace[k] for k in ("acc_audio", "acc_visual")}, what="accuracies")
    assert assert_close(run.state(), fx.group("final")) <= 1e-6


@pytest.mark.parametrize(
    "change",
    [
        {"method.accuracy": "corrected"},  # each modality's own accuracy: the audio ratio is not the visual one
        {"method.modulation_ends": 1000},  # no window: epoch 8 would be scaled too
    ],
)
def test_the_corrected_accuracy_or_no_window_fails_the_comparison(change):
    fx = load_fixture("mslr")
    run = run_from_fixture("mslr", fx, change)
    with pytest.raises(AssertionError, match="largest relative differences"):
        assert_close(run.state(), fx.group("final"))
