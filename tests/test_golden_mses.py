"""Golden steps: ``mses`` against the AGM authors' MSES (``run/CREMAD_main.py``; scripts/golden/mslr_mses.py).

One SGD step per epoch (float64, identical weights and batches) through the released ``CREMAD_main`` until
audio stops: its smoothed held-out loss (test split, as AGM monitors it) has not improved for more than 80
epochs, so the whole model and optimiser of audio's best epoch are reloaded. AGM's window
(``modulation_ends`` = the stop epoch + 1, epochs counted from 1) multiplies audio's gradients by 0 in the one
epoch after the stop and lets audio train again in the next. Compared: every epoch's per-modality held-out
loss, the stop epoch, the parameters and buffers at the end.
"""

from __future__ import annotations

import pytest
import torch

from tests.golden.format import load_fixture
from tests.golden.harness import assert_close, run_from_fixture


def test_fixture_spans_the_stop_the_reload_and_the_window_edge():
    fx = load_fixture("mses")
    o, trace, stop = fx.meta["suite_overrides"], fx.group("trace"), fx.meta["audio_stops_at"]
    assert stop >= 82 and o["method.modulation_ends"] == stop + 1 and o["train.epochs"] == stop + 3
    # AGM's audio ratio: 1 until the stop, 0 after it (applied only inside the window)
    assert trace["ratio_audio"].tolist() == [1.0] * stop + [0.0] * 3
    assert (trace["ratio_visual"] == 1.0).all()  # visual never stops


def test_steps_equal_the_released_code():
    fx = load_fixture("mses")
    run = run_from_fixture("mses", fx)
    history = run.method.history
    losses = {
        f"loss_{m}": torch.tensor([h["loss"][m] for h in history], dtype=torch.float64) for m in ("audio", "visual")
    }
    trace = fx.group("trace")
    assert_close(losses, {k: trace[k] for k in losses}, what="held-out losses")
    assert run.method.stoppers["audio"].stopped_at == fx.meta["audio_stops_at"]
    assert run.method.stoppers["visual"].stopped_at is None
    assert assert_close(run.state(), fx.group("final")) <= 1e-6


def test_a_window_one_epoch_longer_fails_the_comparison():
    # what counting the window's epochs from 0 would do: audio frozen one epoch longer
    fx = load_fixture("mses")
    run = run_from_fixture("mses", fx, {"method.modulation_ends": fx.meta["audio_stops_at"] + 2})
    with pytest.raises(AssertionError, match="largest relative differences"):
        assert_close(run.state(), fx.group("final"))
