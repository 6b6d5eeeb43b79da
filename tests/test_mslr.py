"""MSLR: base coefficients, accuracy ratios, gradient multipliers and a short run."""

import pytest
import torch
import torch.nn.functional as F
from conftest import CHANCE_AV_DIGITS, first_batch, short_config, train_briefly

from benchmark.config import ConfigError, build_config
from benchmark.trainer import build_run
from methods.mslr import Mslr, accuracy_ratio, base_coefficients


def test_base_coefficients_two_and_three_modalities():
    assert base_coefficients(("audio", "visual")) == pytest.approx({"audio": 0.9, "visual": 1.1})
    assert base_coefficients(("rgb", "depth", "flow")) == pytest.approx({"rgb": 0.9, "depth": 1.0, "flow": 1.1})


def test_accuracy_ratio_uses_the_previous_window():
    assert accuracy_ratio([0.5, 0.6, 0.7, 0.8, 0.9], window=5) == 1.0  # window not complete yet
    # latest 0.6 over mean(0.2, 0.4, 0.4, 0.6, 0.4) = 0.4
    assert accuracy_ratio([0.2, 0.4, 0.4, 0.6, 0.4, 0.6], window=5) == pytest.approx(1.5)
    # only the 5 epochs before the latest count: mean(0.5, 0.5, 0.5, 0.5, 1.0) = 0.6
    assert accuracy_ratio([0.0, 0.5, 0.5, 0.5, 0.5, 1.0, 0.3], window=5) == pytest.approx(0.5)


def _metrics(acc_a: float, acc_v: float) -> dict:
    return {"val": {"acc_audio": acc_a, "acc_visual": acc_v}, "test": {"acc_audio": 0.0, "acc_visual": 0.0}}


def test_multipliers_follow_validation_accuracies():
    method = build_run(short_config("mslr", **{"method.window": 5, "method.accuracy": "corrected"})).method
    accs = [(0.2, 0.1), (0.4, 0.2), (0.4, 0.2), (0.6, 0.2), (0.4, 0.3)]
    for e, (a, v) in enumerate(accs):
        method.on_evaluation_end(e, _metrics(a, v))
    assert method.multipliers() == pytest.approx({"audio": 0.9, "visual": 1.1})
    method.on_evaluation_end(5, _metrics(0.6, 0.1))
    # audio 0.6 / 0.4 = 1.5; visual 0.1 / 0.2 = 0.5
    assert method.multipliers() == pytest.approx({"audio": 0.9 * 1.5, "visual": 1.1 * 0.5})
    state = method.extra_state()
    fresh = build_run(short_config("mslr", **{"method.window": 5, "method.accuracy": "corrected"})).method
    fresh.load_extra_state(state)
    assert fresh.multipliers() == pytest.approx(method.multipliers())


def test_official_accuracy_is_agms_visual_accuracy_for_every_modality():
    # AGM's test() counts acc_a inside the visual branch (CREMAD_main.py:402-404): both ratios are the visual one
    method = build_run(short_config("mslr", **{"method.window": 1})).method
    assert method.cfg.accuracy == "official"
    method.on_evaluation_end(0, _metrics(0.2, 0.1))
    method.on_evaluation_end(1, _metrics(0.6, 0.3))
    assert method.ratios == pytest.approx({"audio": 3.0, "visual": 3.0})
    assert method.acc_history == {"audio": [0.1, 0.3], "visual": [0.1, 0.3]}
    assert Mslr.label(method.cfg) == "mslr"


def test_multipliers_act_only_in_agms_window_counted_from_one():
    method = build_run(short_config("mslr", **{"method.modulation_starts": 2, "method.modulation_ends": 3})).method
    method.ratios = {"audio": 2.0, "visual": 0.5}
    batch = first_batch(method, "val", shuffle=False, batch_size=8)
    applied = []
    for epoch in range(4):  # 0-based epochs 0..3 are AGM's epochs 1..4: scaled in 2 and 3 only
        method.on_epoch_start(epoch)
        applied.append(method.training_step(batch, 0)["mult_audio"])
    assert applied == pytest.approx([1.0, 0.9 * 2.0, 0.9 * 2.0, 1.0])
    with pytest.raises(ConfigError, match="modulation_starts"):
        short_config("mslr", **{"method.modulation_starts": 4, "method.modulation_ends": 3})


def test_av_digits_uses_a_short_window():
    assert short_config("mslr").method_cfg.window == 2
    assert build_config("mslr", "av_digits", 0, {"method.window": 5}).method_cfg.window == 5


def test_test_split_variant_reads_the_test_split():
    overrides = {"method.acc_split": "test", "method.window": 1, "method.accuracy": "corrected"}
    method = build_run(short_config("mslr", **overrides)).method
    method.on_evaluation_end(0, {"val": {"acc_audio": 0.5, "acc_visual": 0.5}, "test": _metrics(0.2, 0.4)["val"]})
    method.on_evaluation_end(1, {"val": {"acc_audio": 0.5, "acc_visual": 0.5}, "test": _metrics(0.4, 0.2)["val"]})
    assert method.ratios == pytest.approx({"audio": 2.0, "visual": 0.5})
    assert Mslr.label(method.cfg) == "mslr[test-acc,corrected-acc]"


def test_gradients_are_scaled_per_modality():
    setup = build_run(short_config("mslr"))
    method = setup.method
    assert setup.config.model.fusion == "sum"
    method.ratios = {"audio": 2.0, "visual": 0.5}
    batch = first_batch(method, "val", shuffle=False, batch_size=16)
    model = method.model
    out = model(batch)
    F.cross_entropy(out.logits, batch["label"]).backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    method.optimizer.step = lambda: None  # keep the scaled gradients for inspection
    method.training_step(batch, 0)
    grads = dict(model.named_parameters())
    for name, g in ref.items():
        if name.startswith(("encoders.audio.", "fusion.fcs.audio.")):
            expected = 0.9 * 2.0
        elif name.startswith(("encoders.visual.", "fusion.fcs.visual.")):
            expected = 1.1 * 0.5
        else:
            raise AssertionError(f"parameter {name} belongs to no modality")
        torch.testing.assert_close(grads[name].grad, expected * g, rtol=1e-4, atol=1e-6)


def test_unknown_modality_in_coefficients_is_an_error():
    with pytest.raises(ValueError, match="not modalities"):
        build_run(short_config("mslr", **{"method.coefficients": "text:1.0"}))
    with pytest.raises(ConfigError, match="window"):
        build_config("mslr", "av_digits", 0, {"method.window": 0})


@pytest.mark.slow
def test_short_run_learns():
    row = train_briefly("mslr", epochs=1, **{"train.max_steps_per_epoch": 12})
    assert row["label"] == "mslr"
    assert row["test_acc[last]"] > 2 * CHANCE_AV_DIGITS
    assert {"test_acc_audio[last]", "test_acc_visual[last]"} <= set(row)
