"""G-Blending: the G/O^2 weights against a hand computation, and a short run."""

from __future__ import annotations

import pytest
from conftest import CHANCE_AV_DIGITS, short_config, train_briefly

from methods.gblending import blend_weights


def test_weights_are_generalisation_over_overfitting_squared():
    # (train loss, held-out loss) before and after each probe window
    before = {"audio": (2.0, 2.1), "visual": (2.3, 2.3), "fused": (2.0, 2.1)}
    after = {"audio": (1.0, 1.5), "visual": (2.0, 2.1), "fused": (0.5, 1.4)}
    weights, detail = blend_weights(before, after)
    # audio:  G = 2.1 - 1.5 = 0.6, O = (1.5 - 1.0) - (2.1 - 2.0) = 0.4, w = 0.6 / 0.16 = 3.75
    # visual: G = 0.2, O = (2.1 - 2.0) - 0 = 0.1, w = 0.2 / 0.01 = 20
    # fused:  G = 0.7, O = 0.9 - 0.1 = 0.8, w = 0.7 / 0.64 = 1.09375
    assert detail["audio"]["G"] == pytest.approx(0.6) and detail["audio"]["O"] == pytest.approx(0.4)
    raw = {"audio": 3.75, "visual": 20.0, "fused": 1.09375}
    total = sum(raw.values())
    assert weights == pytest.approx({k: v / total for k, v in raw.items()})
    assert sum(weights.values()) == pytest.approx(1.0)


def test_no_generalisation_gives_zero_weight_and_tiny_overfitting_is_floored():
    before = {"audio": (2.0, 2.0), "fused": (2.0, 2.0)}
    after = {"audio": (1.0, 2.5), "fused": (1.9, 1.9)}  # audio: G < 0; fused: O = 0
    weights, detail = blend_weights(before, after, min_overfit=0.01)
    assert weights == {"audio": 0.0, "fused": 1.0}
    assert detail["fused"]["w_raw"] == pytest.approx(0.1 / 0.01**2)


def test_all_heads_without_generalisation_fall_back_to_uniform():
    before = {"audio": (2.0, 2.0), "visual": (2.0, 2.0), "fused": (2.0, 2.0)}
    after = {k: (1.0, 2.2) for k in before}
    weights, _ = blend_weights(before, after)
    assert weights == pytest.approx({k: 1 / 3 for k in before})


def test_short_run_learns_and_keeps_its_weights(store):
    row = train_briefly(
        "gblending",
        epochs=2,
        store=store,
        **{"train.max_steps_per_epoch": 6, "method.super_epoch": 1, "method.probe_steps": 2},
    )
    assert row["status"] == "ok"
    assert row["test_acc[last]"] > 2 * CHANCE_AV_DIGITS
    assert {"test_acc_audio[last]", "test_acc_visual[last]"} <= set(row)
    blends = store.read_history(row["run_id"])["artifacts"]["blend_weights"]
    assert [b["epoch"] for b in blends] == [1, 2]  # re-estimated at every super-epoch
    for b in blends:
        assert set(b["weights"]) == {"audio", "visual", "fused"}
        assert sum(b["weights"].values()) == pytest.approx(1.0)
        assert all(len(b[k]["before"]) == 2 for k in ("audio", "visual", "fused"))


def test_quick_suite_defaults_and_validation():
    cfg = short_config("gblending")
    assert (cfg.method_cfg.super_epoch, cfg.method_cfg.probe_steps, cfg.method_cfg.min_overfit) == (3, 19, 0.01)
    from benchmark.config import ConfigError, build_config

    assert build_config("gblending", "av_digits", 0, {}).method_cfg.super_epoch == 3
    with pytest.raises(ConfigError, match="super_epoch"):
        short_config("gblending", **{"method.super_epoch": 0})
