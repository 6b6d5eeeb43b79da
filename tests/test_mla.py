"""MLA: entropy fusion weights (batch and per-sample), the OWM projector (scalar and as-coded denominators),
the official/paper switch, the released head initialisation, and a short run that learns. The whole released
training step is pinned in test_golden_mla.py."""

import math

import pytest
import torch
from conftest import CHANCE_AV_DIGITS, first_batch, short_config, train_briefly

from benchmark.trainer import build_run
from methods.mla import default_fixed_weights, entropy_fusion_weights, fuse_logits, owm_update, projection_alpha

OUT_A = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
OUT_V = torch.tensor([[0.5, 0.5], [0.2, 0.1]])


def test_batch_entropy_weights_reference_vector():
    # baselines.md section 10: softmax over the batch dimension, H_a = 0.947537, H_v = 1.355563.
    w = entropy_fusion_weights([OUT_A, OUT_V])
    assert w.shape == (2,)
    assert w.tolist() == pytest.approx([0.600614, 0.399386], abs=1e-6)
    h_a, h_v = 0.947537, 1.355563
    assert float(w[0]) == pytest.approx(1 / (1 + math.exp(h_a - h_v)), abs=1e-6)


def test_per_sample_entropy_weights_hand_computed():
    w = entropy_fusion_weights([OUT_A, OUT_V], per_sample=True)
    assert w.shape == (2, 2)

    def ent(row):
        p = torch.softmax(torch.tensor(row), 0)
        return float(-(p * p.log()).sum())

    for i in range(2):
        h_a, h_v = ent(OUT_A[i].tolist()), ent(OUT_V[i].tolist())
        assert float(w[0, i]) == pytest.approx(math.exp(-h_a) / (math.exp(-h_a) + math.exp(-h_v)), abs=1e-6)
    # Sample 0: audio is confident (H 0.365334) vs visual uniform (H ln 2) -> w_a = 1 / (1 + e^(0.365334 - ln 2)).
    assert float(w[0, 0]) == pytest.approx(0.581227, abs=1e-5)
    fused = fuse_logits([OUT_A, OUT_V], w)
    assert fused[1].tolist() == pytest.approx((w[0, 1] * OUT_A[1] + w[1, 1] * OUT_V[1]).tolist())


def test_weights_three_modalities_sum_to_one():
    logits = [torch.randn(5, 4) for _ in range(3)]
    assert float(entropy_fusion_weights(logits).sum()) == pytest.approx(1.0)
    assert entropy_fusion_weights(logits, per_sample=True).sum(0).tolist() == pytest.approx([1.0] * 5)
    assert default_fixed_weights(3) == (0.35, 0.25, 0.4) and default_fixed_weights(2) == (0.55, 0.45)


def test_projection_reference_vectors():
    # baselines.md section 10: P = I, r = (1, 1), grad W = [[1, 1], [2, -1]], alpha = 0.1.
    p, r = torch.eye(2, dtype=torch.float64), torch.tensor([1.0, 1.0])
    g = torch.tensor([[1.0, 1.0], [2.0, -1.0]], dtype=torch.float64)
    scalar = owm_update(p, r, 0.1, scalar=True)
    assert scalar.flatten().tolist() == pytest.approx([0.523217, -0.475651, -0.475651, 0.523217], abs=1e-6)
    assert (g @ scalar.t()).flatten().tolist() == pytest.approx([0.047565, 0.047565, 1.522085, -1.474520], abs=1e-6)
    coded = owm_update(p, r, 0.1, scalar=False)
    assert coded.flatten().tolist() == pytest.approx([0.070360, -0.703598, -0.703598, 0.070360], abs=1e-6)
    assert (g @ coded.t()).flatten().tolist() == pytest.approx([-0.633238, -0.633238, 0.844317, -1.477555], abs=1e-6)


def test_projection_own_hand_computed():
    # P = I, r = (2, 0), alpha = 0.01: k = (2, 0), r k = 4 -> P = diag(1 - 4/4.01, 1) / norm.
    p = owm_update(torch.eye(2, dtype=torch.float64), torch.tensor([2.0, 0.0]), 0.01)
    a = 1 - 4 / 4.01
    assert p.flatten().tolist() == pytest.approx([a / math.hypot(a, 1), 0, 0, 1 / math.hypot(a, 1)])
    assert projection_alpha(0, 10) == pytest.approx(0.1) and projection_alpha(5, 10) == pytest.approx(0.1**1.5)


def test_shared_head_has_the_released_weight_init():
    # main.py applies utils.weight_init to the whole model: the shared head is xavier-normal with zero bias
    # (PyTorch's default Linear init would give a uniform weight of std 1/sqrt(3 D) and a non-zero bias).
    head = build_run(short_config("mla", 1)).method.model.head
    assert torch.count_nonzero(head.bias) == 0
    xavier_std = math.sqrt(2.0 / (head.in_features + head.out_features))
    assert float(head.weight.std()) == pytest.approx(xavier_std, rel=0.1)


def _one_step(variant: str):
    setup = build_run(short_config("mla", 1, **{"method.variant": variant}))
    method = setup.method
    method.model.train()
    batch = first_batch(method, "train", shuffle=False, batch_size=16)
    method.training_step(batch, 0)
    return method, batch


def test_official_never_projects_paper_does():
    official, _ = _one_step("official")
    assert official.exp_count == 2 and torch.equal(official.projector, torch.eye(official.projector.shape[0]))
    paper, batch = _one_step("paper")
    # The first step is never projected; the second (visual) one is, with the visual batch-mean feature.
    assert not torch.equal(paper.projector, torch.eye(paper.projector.shape[0]))
    assert float(paper.projector.norm()) == pytest.approx(1.0, abs=1e-5)


def test_paper_projects_head_gradient():
    method, batch = _one_step("paper")
    head = method.model.head
    p_before = method.projector.clone()
    feats = method.model.encode(batch)
    raw = torch.autograd.grad(torch.nn.functional.cross_entropy(head(feats["audio"]), batch["label"]), head.weight)[0]
    p_audio = owm_update(p_before, feats["audio"].detach().mean(0), projection_alpha(1, method.steps_per_epoch))
    captured = []
    orig_step = method.optimizer.step

    def spy():
        captured.append(head.weight.grad.clone())
        orig_step()

    method.optimizer.step = spy
    method.training_step(batch, 1)
    # Audio step of the second batch: grad W <- grad W P^T, P updated with the audio batch-mean feature.
    assert torch.allclose(captured[0], raw @ p_audio.t(), atol=1e-5)
    assert not torch.allclose(captured[0], raw, atol=1e-3)


def test_official_and_paper_fusion_differ():
    method, batch = _one_step("official")
    method.model.eval()
    with torch.no_grad():
        out = method.predict(batch)
        uni = [out.unimodal_logits[m] for m in method.modalities]
        w = entropy_fusion_weights(uni)
        assert torch.allclose(out.logits, w[0] * uni[0] + w[1] * uni[1], atol=1e-6)
        method.cfg.variant = "paper"
        out_p = method.predict(batch)
        wp = entropy_fusion_weights(uni, per_sample=True)
        assert torch.allclose(out_p.logits, wp[0, :, None] * uni[0] + wp[1, :, None] * uni[1], atol=1e-6)
        method.cfg.inference = "fixed"
        out_f = method.predict(batch)
        assert torch.allclose(out_f.logits, 0.55 * uni[0] + 0.45 * uni[1], atol=1e-6)


@pytest.mark.slow
def test_short_run_learns_above_chance():
    row = train_briefly("mla", epochs=1, **{"train.max_steps_per_epoch": 25})
    assert row["test_acc[last]"] > 2 * CHANCE_AV_DIGITS
    assert row["test_acc_audio[last]"] > 2 * CHANCE_AV_DIGITS
