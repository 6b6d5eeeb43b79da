"""MSES: the smoothed loss and the per-modality stop decision against hand computations, and short runs."""

from __future__ import annotations

import pytest
import torch
from conftest import CHANCE_AV_DIGITS, first_batch, short_config, train_briefly

from benchmark.config import ConfigError
from benchmark.trainer import build_run
from methods.mses import ModalityStopper, Mses, smoothed_loss


def test_smoothing_uses_the_previous_raw_loss():
    assert smoothed_loss(1.0, None, 0.6) == 1.0
    assert smoothed_loss(1.0, 2.0, 0.6) == pytest.approx(0.6 * 2.0 + 0.4 * 1.0)


def test_stop_decision_by_hand():
    s = ModalityStopper(patience=2, smoothing=0.6)
    raw = [1.0, 0.8, 0.9, 0.95, 0.7]
    # smoothed: 1.0 | .6*1.0+.4*.8 = .92 | .6*.8+.4*.9 = .84 | .6*.9+.4*.95 = .92 | .6*.95+.4*.7 = .85
    # best: epoch 1 (1.0), 2 (.92), 3 (.84); epoch 4: 4-3 = 1 <= 2; epoch 5: .85 > .84, 5-3 = 2 <= 2
    decisions = [s.update(e, loss) for e, loss in enumerate(raw, start=1)]
    assert decisions == [(True, False), (True, False), (True, False), (False, False), (False, False)]
    assert s.best_epoch == 3 and s.best_loss == pytest.approx(0.84)
    # epoch 6: .6*.7 + .4*1.0 = .82 < .84 -> new best, no stop
    assert s.update(6, 1.0) == (True, False)
    # epochs 7, 8 no improvement; epoch 9: 9 - 6 = 3 > 2 -> stop (once)
    assert [s.update(e, 2.0)[1] for e in (7, 8, 9)] == [False, False, True]
    assert s.stopped_at == 9 and s.update(10, 3.0) == (False, False)


def test_label_names_the_variants():
    assert Mses.label(short_config("mses").method_cfg) == "mses"
    cfg = short_config("mses", **{"method.monitor_split": "test", "method.variant": "paper"}).method_cfg
    assert Mses.label(cfg) == "mses[paper,test-monitored]"


def test_needs_the_sum_model():
    with pytest.raises(ValueError, match="model.fusion=sum"):
        build_run(short_config("mses", **{"model.fusion": "concat"}))
    with pytest.raises(ConfigError, match="smoothing"):
        short_config("mses", **{"method.smoothing": 1.0})


def _stop_audio_at_once(variant: str):
    """A run whose audio branch stops after its first monitored epoch (patience 0, loss forced up)."""
    run = build_run(short_config("mses", **{"method.patience": 0, "method.variant": variant}))
    method = run.method
    return method


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["official", "paper"])
def test_stopping_restores_the_best_epoch_and_freezes_the_modality(variant):
    method = _stop_audio_at_once(variant)
    method.on_epoch_start(0)
    method.on_epoch_end(0)  # epoch 1: every modality's first loss is its best; snapshot taken
    best = {k: v.clone() for k, v in method.model.state_dict().items()}
    batch = first_batch(method)
    method.training_step(batch, 0)  # the weights move
    losses = method.modality_losses()
    # epoch 2: force audio's loss up and visual's down -> audio stops (2 - 1 > 0), visual improves
    method.modality_losses = lambda: {"audio": losses["audio"] + 10.0, "visual": losses["visual"] - 10.0}
    method.on_epoch_end(1)
    assert method.stopped == {"audio"}
    state = method.model.state_dict()
    audio_keys = method.modality_state_keys("audio")
    assert audio_keys and all(torch.equal(state[k], best[k]) for k in audio_keys)
    visual_keys = method.modality_state_keys("visual")
    visual_rolled_back = all(torch.equal(state[k], best[k]) for k in visual_keys)
    assert visual_rolled_back == (variant == "official")  # official reloads the whole model
    # further steps leave audio's head untouched in the paper variant (exact freeze)
    method.on_epoch_start(2)
    head = method.model.fusion.fcs["audio"].weight.detach().clone()
    method.training_step(batch, 1)
    if variant == "paper":
        assert torch.equal(method.model.fusion.fcs["audio"].weight, head)
        assert all(p.grad is None for p in method.modality_parameters("audio"))
    else:
        assert all(torch.count_nonzero(p.grad) == 0 for p in method.modality_parameters("audio"))


@pytest.mark.slow
def test_short_run_learns_above_chance_with_per_modality_accuracy(store):
    # lr 1e-2 and weight decay 1e-4 (the dataset's): 16 steps at the tuned 16-epoch values stay near chance
    over = {"train.max_steps_per_epoch": 8, "method.patience": 0, "train.lr": 1e-2, "train.weight_decay": 1e-4}
    row = train_briefly("mses", epochs=2, store=store, **over)
    assert row["test_acc[last]"] > 2 * CHANCE_AV_DIGITS
    assert 0.0 <= row["test_acc_audio[last]"] <= 1.0 and 0.0 <= row["test_acc_visual[last]"] <= 1.0
    art = store.read_history(row["run_id"])["artifacts"]["mses"]
    assert [e["epoch"] for e in art["epochs"]] == [1, 2]
    assert set(art["stopped_at"]) == {"audio", "visual"}


@pytest.mark.slow
def test_official_freeze_acts_only_inside_agms_window_counted_from_one():
    # AGM multiplies a stopped modality's gradients by 0 only while modulation_starts <= epoch <= modulation_ends
    # (CREMAD_main.py:211), epochs counted from 1: with the window 0-2, AGM's epoch 3 (our 0-based 2) trains it
    method = build_run(short_config("mses", **{"method.modulation_ends": 2})).method
    method.stoppers["audio"].stopped_at = 1
    batch = first_batch(method)
    zeroed = []
    for epoch in (1, 2):
        method.on_epoch_start(epoch)
        method.training_step(batch, 0)
        zeroed.append(all(torch.count_nonzero(p.grad) == 0 for p in method.modality_parameters("audio")))
    assert zeroed == [True, False]
    assert any(torch.count_nonzero(p.grad) > 0 for p in method.modality_parameters("visual"))
