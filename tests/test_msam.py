"""M-SAM: Shapley values on a constructed batch, the SAM step on a two-parameter example, a short run."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import CHANCE_AV_DIGITS, short_config, train_briefly
from torch import nn

from benchmark.data import DatasetInfo
from benchmark.fusion import SumFusion
from benchmark.method import MethodContext
from benchmark.models import FusionModel
from methods.msam import (
    MSam,
    dominant_modality,
    frozen_bn_stats,
    msam_gradients,
    shapley_shares,
    shapley_values,
)

S = frozenset


def test_two_modality_shapley_by_hand():
    acc = {S(): 0.1, S({"a"}): 0.6, S({"v"}): 0.3, S({"a", "v"}): 0.7}
    phi = shapley_values(acc, ["a", "v"])
    # Phi_a = 1/2[(0.6 - 0.1) + (0.7 - 0.3)], Phi_v = 1/2[(0.3 - 0.1) + (0.7 - 0.6)]
    assert phi["a"] == pytest.approx(0.45) and phi["v"] == pytest.approx(0.15)
    shares = shapley_shares(phi)
    assert shares == pytest.approx({"a": 0.75, "v": 0.25})
    assert dominant_modality(shares) == "a"


def test_three_modality_shapley_by_hand_with_a_null_player():
    acc = {
        S(): 0.0,
        S("a"): 0.3,
        S("b"): 0.2,
        S("c"): 0.0,
        S("ab"): 0.6,
        S("ac"): 0.3,
        S("bc"): 0.2,
        S("abc"): 0.6,
    }
    phi = shapley_values(acc, ["a", "b", "c"])
    # Phi_a = 1/3 (.3 - 0) + 1/6 (.6 - .2) + 1/6 (.3 - 0) + 1/3 (.6 - .2)
    assert phi["a"] == pytest.approx(0.1 + 0.4 / 6 + 0.05 + 0.4 / 3)
    assert phi["b"] == pytest.approx(0.2 / 3 + 0.05 + 0.2 / 6 + 0.1)
    assert phi["c"] == pytest.approx(0.0)
    assert sum(phi.values()) == pytest.approx(acc[S("abc")] - acc[S()])


def test_shares_clamp_negative_values_and_fall_back_to_uniform():
    assert shapley_shares({"a": 0.5, "v": -0.1}) == {"a": 1.0, "v": 0.0}
    assert shapley_shares({"a": 0.0, "v": -0.2}) == {"a": 0.5, "v": 0.5}
    assert dominant_modality({"a": 0.5, "v": 0.5}) == "a"  # ties: first modality


class _Identity(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _method_with_identity_model() -> MSam:
    """An M-SAM instance whose encoders are identities and whose head sums the features (logits = a + v)."""
    config = short_config("msam")
    info = DatasetInfo(name="toy", modalities=("audio", "visual"), num_classes=3, class_names=("0", "1", "2"))
    ctx = MethodContext(config=config, info=info, device=torch.device("cpu"), splits={})
    fusion = SumFusion({"audio": 3, "visual": 3}, 3)
    with torch.no_grad():
        for fc in fusion.fcs.values():
            fc.weight.copy_(torch.eye(3))
            fc.bias.zero_()
    method = MSam(config.method_cfg, ctx)
    method.model = FusionModel(nn.ModuleDict({"audio": _Identity(3), "visual": _Identity(3)}), fusion)
    method.setup()
    return method


def test_shapley_shares_on_a_constructed_batch():
    method = _method_with_identity_model()
    batch = {
        # audio alone predicts [0, 1, 2, 0]: 3 of 4 right
        "audio": torch.tensor([[2.0, 0, 0], [0, 2, 0], [0, 0, 2], [2, 0, 0]]),
        # visual alone predicts [1, 1, 0, 2]: 1 of 4 right
        "visual": torch.tensor([[0.0, 1, 0], [0, 3, 0], [1, 0, 0], [0, 0, 1]]),
        "label": torch.tensor([0, 1, 2, 1]),
    }
    # acc: {} = 1/4 (all-zero logits predict class 0), {a} = 3/4, {v} = 1/4, {a, v} = 3/4
    # Phi_a = 1/2[(3/4 - 1/4) + (3/4 - 1/4)] = 1/2, Phi_v = 1/2[(1/4 - 1/4) + (3/4 - 3/4)] = 0
    shares = method.batch_shares(batch)
    assert shares == pytest.approx({"audio": 1.0, "visual": 0.0})
    # With visual made the better one on sample 4, the shares move towards it.
    batch["visual"][3] = torch.tensor([0.0, 5, 0])
    # acc: {} = 1/4, {a} = 3/4, {v} = 2/4, {a, v} = 4/4 -> Phi_a = 1/2[(1/2) + (1/2)] = 1/2, Phi_v = 1/2[1/4 + 1/4]
    shares = method.batch_shares(batch)
    assert shares == pytest.approx({"audio": 2 / 3, "visual": 1 / 3})


def test_sam_step_matches_a_two_parameter_hand_computation():
    # l(theta) = 0.5 theta1^2 + 2 theta2^2 at theta = (3, 1): grad = (3, 4), ||grad|| = 5
    t1 = torch.tensor(3.0, requires_grad=True)
    t2 = torch.tensor(1.0, requires_grad=True)
    flags = []

    def closure(perturbed: bool) -> torch.Tensor:
        flags.append(perturbed)
        return 0.5 * t1**2 + 2 * t2**2

    loss, loss_p = msam_gradients([t1, t2], closure, share=0.75, rho=0.5)
    # eps = 0.5 (3, 4) / 5 = (0.3, 0.4); grad at (3.3, 1.4) = (3.3, 5.6)
    # grad = 0.75 (3.3, 5.6) + 0.25 (3, 4) = (3.225, 5.2)
    assert flags == [False, True]
    assert loss == pytest.approx(6.5) and loss_p == pytest.approx(0.5 * 3.3**2 + 2 * 1.4**2)
    assert t1.grad.item() == pytest.approx(3.225) and t2.grad.item() == pytest.approx(5.2)
    assert t1.item() == 3.0 and t2.item() == 1.0  # restored
    torch.optim.SGD([t1, t2], lr=0.1).step()
    assert t1.item() == pytest.approx(3 - 0.3225) and t2.item() == pytest.approx(1 - 0.52)


def test_sam_perturbs_only_the_chosen_parameters():
    t1 = torch.tensor(3.0, requires_grad=True)
    t2 = torch.tensor(1.0, requires_grad=True)
    msam_gradients([t1, t2], lambda _: 0.5 * t1**2 + 2 * t2**2, share=0.75, rho=0.5, perturb=[t1])
    # eps = (0.5, 0) (normalised over t1 only); grad at (3.5, 1) = (3.5, 4)
    # grad = 0.75 (3.5, 4) + 0.25 (3, 4) = (3.375, 4)
    assert t1.grad.item() == pytest.approx(3.375) and t2.grad.item() == pytest.approx(4.0)


def test_share_one_is_plain_sam_and_rho_zero_is_plain_sgd():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    msam_gradients([w], lambda _: (w**2).sum(), share=1.0, rho=0.1)
    # SAM: grad 2 (w + 0.1 w/||w||)
    expected = 2 * (torch.tensor([1.0, -2.0]) * (1 + 0.1 / math.sqrt(5)))
    assert torch.allclose(w.grad, expected)
    msam_gradients([w], lambda _: (w**2).sum(), share=0.6, rho=0.0)
    assert torch.allclose(w.grad, torch.tensor([2.0, -4.0]))


def test_perturbed_pass_leaves_batchnorm_statistics_alone():
    bn = nn.BatchNorm1d(2)
    x = torch.randn(8, 2) + 5
    with frozen_bn_stats(bn):
        bn(x)
    assert torch.equal(bn.running_mean, torch.zeros(2)) and bn.momentum == 0.1
    bn(x)
    assert not torch.equal(bn.running_mean, torch.zeros(2))


@pytest.mark.slow
def test_short_run_learns_above_chance_and_records_shares(store):
    row = train_briefly("msam", epochs=1, store=store, **{"train.max_steps_per_epoch": 10})
    assert row["test_acc[last]"] > 2 * CHANCE_AV_DIGITS
    shapley = store.read_history(row["run_id"])["artifacts"]["shapley"]
    assert len(shapley) == 1 and sum(shapley[0]["mean_share"].values()) == pytest.approx(1.0)


@pytest.mark.slow
def test_dominant_encoder_scope_runs():
    row = train_briefly(
        "msam", epochs=1, **{"train.max_steps_per_epoch": 3, "method.perturb_scope": "dominant_encoder"}
    )
    assert 0.0 <= row["test_acc[last]"] <= 1.0


def test_invalid_rho_is_rejected():
    from benchmark.config import ConfigError

    with pytest.raises(ConfigError, match="rho"):
        short_config("msam", **{"method.rho": -1})


# -- one training step pinned to values derived by hand from the equations -----------------------------


def _hand_step_method(rho: float) -> MSam:
    """Identity encoders (2-d features), sum head with two classes, audio bias (0.1, 0), SGD lr 0.5."""
    config = short_config("msam", **{"method.rho": rho})
    info = DatasetInfo(name="toy", modalities=("audio", "visual"), num_classes=2, class_names=("0", "1"))
    ctx = MethodContext(config=config, info=info, device=torch.device("cpu"), splits={})
    fusion = SumFusion({"audio": 2, "visual": 2}, 2)
    with torch.no_grad():
        for fc in fusion.fcs.values():
            fc.weight.copy_(torch.eye(2))
            fc.bias.zero_()
        fusion.fcs["audio"].bias.copy_(torch.tensor([0.1, 0.0]))
    method = MSam(config.method_cfg, ctx)
    method.model = FusionModel(nn.ModuleDict({"audio": _Identity(2), "visual": _Identity(2)}), fusion)
    method.optimizer = torch.optim.SGD(method.model.parameters(), lr=0.5)
    method.setup()
    return method


HAND_BATCH = {
    "audio": torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [2.0, 0.0]]),
    "visual": torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 3.0], [0.0, 1.0]]),
    "label": torch.tensor([0, 1, 1, 0]),
}


def _ce_gradients(weights: dict[str, torch.Tensor], batch: dict) -> tuple[float, dict[str, torch.Tensor]]:
    """Mean cross-entropy of logits = W_a a + b_a + W_v v + b_v and its gradient, from d CE / dz = (p - onehot) / B."""
    a, v, y = batch["audio"], batch["visual"], batch["label"]
    z = a @ weights["aw"].T + weights["ab"] + v @ weights["vw"].T + weights["vb"]
    p = torch.softmax(z, 1)
    loss = float(-torch.log(p[torch.arange(len(y)), y]).mean())
    g = (p - torch.nn.functional.one_hot(y, 2)) / len(y)
    return loss, {"aw": g.T @ a, "ab": g.sum(0), "vw": g.T @ v, "vb": g.sum(0)}


def _hand_msam_step(rho: float, lr: float = 0.5) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    # Shapley game on batch accuracy, absent modality = zero input (its head adds only its bias):
    #   {}: logits (0.1, 0) for all -> class 0 -> 2/4;  {a}: predicts 0,1,0,0 -> 3/4
    #   {v}: predicts 1,1,1,1 -> 2/4;  {a, v}: predicts 0,1,1,0 -> 4/4
    # Phi_a = 1/2 [(3/4 - 2/4) + (4/4 - 2/4)] = 3/8, Phi_v = 1/2 [(2/4 - 2/4) + (4/4 - 3/4)] = 1/8
    # shares: audio 3/4 (dominant), visual 1/4
    share = 0.75
    theta = {"aw": torch.eye(2), "ab": torch.tensor([0.1, 0.0]), "vw": torch.eye(2), "vb": torch.zeros(2)}
    loss, g = _ce_gradients(theta, HAND_BATCH)
    # eps = rho * g_d / ||g_d|| with g_d = share * grad l (the share cancels), over every parameter
    norm = torch.sqrt(sum((share * t).pow(2).sum() for t in g.values()))
    moved = {k: theta[k] + rho * share * g[k] / norm for k in theta}
    loss_p, g_p = _ce_gradients(moved, HAND_BATCH)
    # theta <- theta - lr [share * grad l(theta + eps) + (1 - share) * grad l(theta)]
    new = {k: theta[k] - lr * (share * g_p[k] + (1 - share) * g[k]) for k in theta}
    return {"loss": loss, "loss_perturbed": loss_p, "share_audio": share, "share_visual": 0.25}, new


def _state(method: MSam) -> dict[str, torch.Tensor]:
    fcs = method.model.fusion.fcs
    return {"aw": fcs["audio"].weight, "ab": fcs["audio"].bias, "vw": fcs["visual"].weight, "vb": fcs["visual"].bias}


def test_one_training_step_equals_the_hand_derivation():
    method = _hand_step_method(rho=0.5)
    stats = method.training_step(dict(HAND_BATCH), 0)
    expected_stats, expected = _hand_msam_step(rho=0.5)
    assert {k: stats[k] for k in expected_stats} == pytest.approx(expected_stats, rel=1e-6)
    assert stats["dominant_share"] == pytest.approx(0.75)
    for k, v in _state(method).items():
        torch.testing.assert_close(v.detach(), expected[k], rtol=1e-6, atol=1e-7)


def test_the_hand_derivation_detects_a_changed_radius():
    method = _hand_step_method(rho=0.4)  # the method runs with another rho than the derivation
    method.training_step(dict(HAND_BATCH), 0)
    _, expected = _hand_msam_step(rho=0.5)
    with pytest.raises(AssertionError):
        for k, v in _state(method).items():
            torch.testing.assert_close(v.detach(), expected[k], rtol=1e-6, atol=1e-7)
