"""MMPareto: the MGDA weights and the per-tensor rescaling against hand-computed values, the gradient that
reaches the optimiser, the official/paper scheduler switch, and a short run that learns."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import CHANCE_AV_DIGITS, first_batch, short_config, train_briefly

from benchmark.trainer import build_run
from methods.mmpareto import combine_gradient, pareto_weights


def test_reference_vector_conflicting_gradients():
    # baselines.md section 10: g_mm = (1, 0), g_u = (-0.5, 1) -> c = 7/13, grad = (0.930261, 1.395391).
    g_mm, g_u = torch.tensor([1.0, 0.0]), torch.tensor([-0.5, 1.0])
    k_mm, k_u = pareto_weights(g_mm, g_u)
    assert k_mm == pytest.approx(1.75 / 3.25) and k_u == pytest.approx(1.5 / 3.25)
    grad = combine_gradient(g_mm, g_u, k_mm, k_u, 1.5)
    assert grad.tolist() == pytest.approx([0.930261, 1.395391], abs=1e-6)


def test_positive_cosine_gives_one_half_and_gamma_times_sum():
    g_mm, g_u = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.5])
    assert pareto_weights(g_mm, g_u) == (0.5, 0.5)
    # new = g_mm + g_u = g_sum, so the ratio is 1 and the gradient is exactly 1.5 * g_sum.
    assert combine_gradient(g_mm, g_u, 0.5, 0.5, 1.5).tolist() == pytest.approx([6.0, 3.75])


def test_min_norm_clamps():
    # <g_mm, g_u> >= |g_mm|^2 (and cosine <= 0 impossible then unless...) -> use a case with cos <= 0:
    # g_mm tiny and opposite: v11 = 0.01, v12 = -0.1 < v11, v22 = 1 -> interior c = (1 + 0.1) / (0.01 + 1 + 0.2).
    k_mm, _ = pareto_weights(torch.tensor([-0.1, 0.0]), torch.tensor([1.0, 0.0]))
    assert k_mm == pytest.approx(1.1 / 1.21)
    # Orthogonal with |g_u| = 0: v12 = 0 >= v22 = 0 -> c = 0.001.
    assert pareto_weights(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))[0] == pytest.approx(0.001)
    # Zero g_mm: v12 = 0 >= v11 = 0 -> c = 0.999.
    assert pareto_weights(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]))[0] == pytest.approx(0.999)


def test_weights_over_several_tensors_and_small_ratio():
    # Lists of tensors are treated as one concatenated vector (all encoder parameters of a modality jointly).
    g_mm = [torch.tensor([1.0]), torch.tensor([[0.0]])]
    g_u = [torch.tensor([-0.5]), torch.tensor([[1.0]])]
    assert pareto_weights(g_mm, g_u)[0] == pytest.approx(7 / 13)
    # Ratio |g_sum| / |new| < 1 keeps |new|: g_mm = g_u = (1, 0) with k = (0.9, 0.9) -> new = (3.6, 0), sum (2, 0).
    out = combine_gradient(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), 0.9, 0.9, 2.0)
    assert out.tolist() == pytest.approx([7.2, 0.0])
    assert torch.equal(combine_gradient(torch.zeros(3), torch.zeros(3), 0.5, 0.5, 1.5), torch.zeros(3))


@pytest.mark.slow
def test_optimiser_receives_combined_gradients():
    """Record g_mm and g_u with separate backward passes (as the official code does) and compare with the
    gradients that the method hands to optimizer.step()."""
    cfg = short_config("mmpareto", 1, **{"train.max_steps_per_epoch": 1})
    setup = build_run(cfg)
    method, model = setup.method, setup.method.model
    model.train()
    batch = first_batch(method, "train", shuffle=False, batch_size=16)
    params = dict(model.named_parameters())

    def grads_of(loss_name):
        model.zero_grad(set_to_none=True)
        out = model(batch)
        y = batch["label"]
        loss = F.cross_entropy(out.logits if loss_name == "mm" else out.unimodal_logits[loss_name], y)
        loss.backward()
        return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in params.items()}

    g = {k: grads_of(k) for k in ("mm", "audio", "visual")}
    expected = {}
    for m in ("audio", "visual"):
        names = [n for n in params if n.startswith(f"encoders.{m}.")]
        k_mm, k_u = pareto_weights([g["mm"][n] for n in names], [g[m][n] for n in names])
        for n in names:
            expected[n] = combine_gradient(g["mm"][n], g[m][n], k_mm, k_u, 1.5)
    for n in params:
        if n.startswith("head."):
            expected[n] = g["mm"][n]
        elif n.startswith("unimodal_heads."):
            expected[n] = g[n.split(".")[1]][n]
    seen = {}
    method.optimizer.step = lambda: seen.update({n: p.grad.clone() for n, p in params.items()})
    method.training_step(batch, 0)
    assert set(seen) == set(expected)
    for n, e in expected.items():
        assert torch.allclose(seen[n], e, atol=1e-5, rtol=1e-4), n
    # The encoders really were rescaled (not just the plain sum).
    n = "encoders.audio." + next(iter(dict(model.encoders["audio"].named_parameters())))
    assert not torch.allclose(seen[n], g["mm"][n] + g["audio"][n])


def test_official_never_steps_scheduler_paper_does():
    over = {"train.lr": 1e-2, "train.scheduler": "step", "train.step_size": 1, "train.gamma": 0.1}
    # Official: the StepLR is never stepped, so the trainer sees no scheduler and the LR stays constant.
    assert build_run(short_config("mmpareto", 2, **over)).method.scheduler is None
    paper = build_run(short_config("mmpareto", 2, **{**over, "method.variant": "paper"})).method
    assert isinstance(paper.scheduler, torch.optim.lr_scheduler.StepLR)
    paper.optimizer.step()  # no gradients: parameters unchanged; keeps the optimiser-then-scheduler order
    paper.scheduler.step()
    assert paper.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # 1e-2 x 0.1


def test_official_crema_d_defaults():
    from benchmark.registry import METHODS

    d = METHODS.get("mmpareto").dataset_defaults["crema_d"]
    assert (d["train.lr"], d["train.epochs"], d["train.optimizer"]) == (2e-3, 50, "sgd")
    assert METHODS.get("mmpareto").Config().gamma == 1.5


@pytest.mark.slow
def test_short_run_learns_above_chance():
    row = train_briefly("mmpareto", epochs=1, **{"train.max_steps_per_epoch": 15})
    assert row["test_acc[last]"] > 2 * CHANCE_AV_DIGITS
    assert math.isfinite(row["test_acc_audio[last]"]) and math.isfinite(row["test_acc_visual[last]"])
