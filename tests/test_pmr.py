"""PMR: prototype logits, ratio and coefficients against hand values, prototype momentum, PER switch, a short run."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import CHANCE_AV_DIGITS, method_and_batch, train_briefly

from methods.pmr import Pmr, imbalance_ratio, pce_coefficients, prototype_entropy, prototype_logits


def test_reference_vector():
    # baselines.md section 10.
    y = torch.tensor([0, 1])
    sim_a = prototype_logits(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.eye(2))
    sim_v = prototype_logits(torch.tensor([[0.5, 0.5], [1.0, 1.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    torch.testing.assert_close(sim_a, torch.tensor([[0.0, -1.414214], [-2.236068, -1.0]]), atol=1e-5, rtol=0)
    assert imbalance_ratio(sim_a, sim_v, y) == pytest.approx(1.579309 / 1.304430, abs=1e-5)
    assert imbalance_ratio(sim_a, sim_v, y) == pytest.approx(1.210727, abs=1e-5)
    assert float(F.cross_entropy(sim_a, y)) == pytest.approx(0.236335, abs=1e-5)
    assert float(F.cross_entropy(sim_v, y)) == pytest.approx(0.455384, abs=1e-5)
    assert pce_coefficients(1.210727, 1.0) == (0.0, 1.0)  # audio ahead -> PCE on visual


def test_by_hand():
    # distances 5 and 4 (3-4-5 triangle and a 4-unit offset) -> logits (-5, -4)
    torch.testing.assert_close(
        prototype_logits(torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 0.0], [3.0, 0.0]])),
        torch.tensor([[-5.0, -4.0]]),
    )
    # s_a = 1/2 (uniform), s_v = sigmoid(ln 3) = 3/4 -> rho = 2/3 < 1 -> PCE on audio
    rho = imbalance_ratio(torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([0]))
    assert rho == pytest.approx(2 / 3)
    assert pce_coefficients(rho, 0.6) == (0.6, 0.0)
    assert pce_coefficients(1.0, 0.6) == (0.0, 0.0)
    assert float(prototype_entropy(torch.zeros(4, 5))) == pytest.approx(math.log(5))


def test_prototypes_are_class_means_with_momentum_after_the_first_epoch():
    method, _ = method_and_batch("pmr", **{"method.momentum": 0.25})
    protos = method.compute_prototypes(0)
    assert set(protos) == {"audio", "visual"}
    feature_dim = 8 * method.ctx.config.model.resnet_width  # ResNet18's last stage: 8 x the base width
    assert protos["audio"].shape == (10, feature_dim) and torch.isfinite(protos["audio"]).all()
    old = {m: torch.zeros(10, 3) for m in method.modalities}
    new = {m: torch.ones(10, 3) for m in method.modalities}
    method.compute_prototypes = lambda epoch: copy.deepcopy(new)
    method.prototypes = copy.deepcopy(old)
    method.update_prototypes(0)  # the official code skips the momentum for epoch <= 0
    torch.testing.assert_close(method.prototypes["audio"], new["audio"])
    method.prototypes = copy.deepcopy(old)
    method.update_prototypes(1)
    torch.testing.assert_close(method.prototypes["visual"], torch.full((10, 3), 0.75))


def test_official_loss_is_ce_plus_pce_of_the_slower_modality_and_paper_adds_per():
    method, batch = method_and_batch("pmr", **{"method.alpha": 0.7, "method.per_weight": 0.3})
    method.on_epoch_start(0)
    state = copy.deepcopy(method.model.state_dict())
    with torch.no_grad():
        out = method.forward(batch)
    y = batch["label"]
    pa = prototype_logits(out.features["audio"], method.prototypes["audio"])
    pv = prototype_logits(out.features["visual"], method.prototypes["visual"])
    rho = imbalance_ratio(pa, pv, y)
    beta, lam = pce_coefficients(rho, 0.7)
    expected = F.cross_entropy(out.logits, y) + beta * F.cross_entropy(pa, y) + lam * F.cross_entropy(pv, y)
    entropy = prototype_entropy(pa if rho > 1 else pv)
    method.model.load_state_dict(state)
    official = method.training_step(batch, 0)
    assert official["loss"] == pytest.approx(float(expected), rel=1e-4)
    method.model.load_state_dict(state)
    method.cfg.variant = "paper"
    paper = method.training_step(batch, 0)
    assert paper["loss"] == pytest.approx(float(expected - 0.3 * entropy), rel=1e-4)


def test_state_round_trip():
    method, _ = method_and_batch("pmr")
    method.on_epoch_start(0)
    other, _ = method_and_batch("pmr")
    other.load_extra_state(method.extra_state())
    torch.testing.assert_close(other.prototypes["audio"], method.prototypes["audio"])
    assert other.load_extra_state({"prototypes": None}) is None and other.prototypes is None


def test_three_modalities_are_refused():
    stub = SimpleNamespace(modalities=("rgb", "depth", "flow"), ctx=SimpleNamespace(info=SimpleNamespace(name="x")))
    with pytest.raises(ValueError, match="two modalities"):
        Pmr.setup(stub)


@pytest.mark.slow
def test_short_run_learns_above_chance():
    row = train_briefly("pmr", epochs=1, **{"train.max_steps_per_epoch": 12})
    assert row["test_acc[last]"] > 2 * CHANCE_AV_DIGITS
