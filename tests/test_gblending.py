"""G-Blending: the G/O^2 weights against a hand computation, and a short run."""

from __future__ import annotations

import pytest
import torch
from conftest import CHANCE_AV_DIGITS, short_config, train_briefly
from torch import nn

from benchmark.data import DatasetInfo, TensorSplit
from benchmark.fusion import ConcatFusion
from benchmark.method import MethodContext
from methods.gblending import GBlending, GBlendModel, blend_weights


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


@pytest.mark.slow
def test_short_run_learns_and_keeps_its_weights(store):
    row = train_briefly(
        "gblending",
        epochs=2,
        store=store,
        # 12 steps: at 6 the harder av_digits of #13 leaves the fused head at chance (.10; 12 steps: .64)
        **{"train.max_steps_per_epoch": 12, "method.super_epoch": 1, "method.probe_steps": 2},
    )
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


# -- the weight estimation and one training step, pinned to a hand derivation (float64: w = G / O^2 turns
# float32 rounding of the losses into relative errors of 1e-4) ----------------------------------------

F64 = torch.float64
TRAIN = {
    "audio": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.5], [0.2, 1.0]], dtype=F64),
    "visual": torch.tensor([[0.5, 0.0], [0.0, 0.3], [-0.5, 0.5], [0.4, -0.2]], dtype=F64),
    "label": torch.tensor([0, 1, 0, 1]),
}
VAL = {
    "audio": torch.tensor([[0.8, 0.1], [0.1, 0.9], [0.5, 0.6], [0.9, 0.3]], dtype=F64),
    "visual": torch.tensor([[0.2, 0.1], [0.1, 0.6], [0.3, -0.1], [-0.2, 0.2]], dtype=F64),
    "label": torch.tensor([0, 1, 1, 0]),
}
LR = 0.5


class _Identity(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _initial() -> dict[str, torch.Tensor]:
    """Per head (audio, visual: Linear(2, 2); fused: Linear(4, 2) on [a, v]) its weight and bias."""
    return {
        "audio.w": torch.tensor([[0.2, -0.1], [0.0, 0.3]], dtype=F64),
        "audio.b": torch.tensor([0.05, 0.0], dtype=F64),
        "visual.w": torch.tensor([[0.1, 0.2], [-0.2, 0.1]], dtype=F64),
        "visual.b": torch.zeros(2, dtype=F64),
        "fused.w": torch.tensor([[0.1, 0.0, 0.2, -0.1], [0.0, 0.1, -0.1, 0.3]], dtype=F64),
        "fused.b": torch.tensor([0.0, 0.1], dtype=F64),
    }


def _gblend_method(probe_steps: int) -> GBlending:
    config = short_config(
        "gblending",
        **{
            "train.batch_size": 4,
            "train.eval_batch_size": 4,
            "train.optimizer": "sgd",
            "train.lr": LR,
            "train.momentum": 0.0,
            "train.weight_decay": 0.0,
            "method.super_epoch": 1,
            "method.probe_steps": probe_steps,
            "method.loss_batches": 0,
            "method.min_overfit": 1e-4,
        },
    )
    info = DatasetInfo(name="toy", modalities=("audio", "visual"), num_classes=2, class_names=("0", "1"))
    splits = {"train": TensorSplit(dict(TRAIN)), "val": TensorSplit(dict(VAL)), "test": TensorSplit(dict(VAL))}
    ctx = MethodContext(config=config, info=info, device=torch.device("cpu"), splits=splits)
    method = GBlending(config.method_cfg, ctx)
    encoders = nn.ModuleDict({"audio": _Identity(2), "visual": _Identity(2)})
    method.model = GBlendModel(encoders, ConcatFusion({"audio": 2, "visual": 2}, 2), 2).double()
    init = _initial()
    with torch.no_grad():
        for m in ("audio", "visual"):
            method.model.heads[m].weight.copy_(init[f"{m}.w"])
            method.model.heads[m].bias.copy_(init[f"{m}.b"])
        method.model.fusion.fc_out.weight.copy_(init["fused.w"])
        method.model.fusion.fc_out.bias.copy_(init["fused.b"])
    method.optimizer = torch.optim.SGD(method.model.parameters(), lr=LR)
    method.setup()
    return method


def _inputs(data: dict, head: str) -> torch.Tensor:
    return torch.cat([data["audio"], data["visual"]], 1) if head == "fused" else data[head]


def _ce(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of softmax(x w^T + b) and its gradients (dCE/dz = (p - onehot) / B)."""
    p = torch.softmax(x @ w.T + b, 1)
    loss = float(-torch.log(p[torch.arange(len(y)), y]).mean())
    g = (p - torch.nn.functional.one_hot(y, 2)) / len(y)
    return loss, g.T @ x, g.sum(0)


def _hand_weights_and_step() -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    init, heads = _initial(), ("audio", "visual", "fused")
    raw = {}
    for k in heads:
        w, b = init[f"{k}.w"], init[f"{k}.b"]
        train0, gw, gb = _ce(w, b, _inputs(TRAIN, k), TRAIN["label"])
        val0 = _ce(w, b, _inputs(VAL, k), VAL["label"])[0]
        # the probe: one SGD step of this head on its own loss over the (single) training batch
        w1, b1 = w - LR * gw, b - LR * gb
        train1 = _ce(w1, b1, _inputs(TRAIN, k), TRAIN["label"])[0]
        val1 = _ce(w1, b1, _inputs(VAL, k), VAL["label"])[0]
        g = val0 - val1  # generalisation: fall of the held-out loss
        o = (val1 - train1) - (val0 - train0)  # overfitting: growth of the held-out/train gap
        raw[k] = max(g, 0.0) / max(abs(o), 1e-4) ** 2
    weights = {k: v / sum(raw.values()) for k, v in raw.items()}
    # one training step on sum_k w_k CE_k: each head moves by lr * w_k * its gradient
    new = {}
    for k in heads:
        w, b = init[f"{k}.w"], init[f"{k}.b"]
        _, gw, gb = _ce(w, b, _inputs(TRAIN, k), TRAIN["label"])
        new[f"{k}.w"], new[f"{k}.b"] = w - LR * weights[k] * gw, b - LR * weights[k] * gb
    return weights, new


def _gblend_state(method: GBlending) -> dict[str, torch.Tensor]:
    heads, fc = method.model.heads, method.model.fusion.fc_out
    out = {f"{m}.{s}": getattr(heads[m], n) for m in ("audio", "visual") for s, n in (("w", "weight"), ("b", "bias"))}
    return {**out, "fused.w": fc.weight, "fused.b": fc.bias}


def test_weight_estimation_and_one_step_equal_the_hand_derivation():
    method = _gblend_method(probe_steps=1)
    method.on_epoch_start(0)  # super-epoch start: the weights are estimated
    weights, expected = _hand_weights_and_step()
    assert all(w > 0 for w in weights.values())  # every head generalises here: no zero weight
    assert method.weights == pytest.approx(weights, rel=1e-6)
    method.training_step(dict(TRAIN), 0)
    for k, v in _gblend_state(method).items():
        torch.testing.assert_close(v.detach(), expected[k], rtol=1e-6, atol=1e-7)


def test_the_hand_derivation_detects_a_longer_probe():
    method = _gblend_method(probe_steps=2)
    method.on_epoch_start(0)
    weights, _ = _hand_weights_and_step()
    assert method.weights != pytest.approx(weights, rel=1e-6)
