"""MIE / IGM: the modification matrix, SAM steps, stages, gradient modification, ablations, artefacts, resume."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.config import ConfigError, build_config
from benchmark.registry import METHODS
from benchmark.trainer import build_run, fit
from methods import mie
from methods.mie import (
    entropy_weighted_fusion,
    flat_modification_matrix,
    input_moment,
    mean_softmax_fusion,
    modify_gradient_,
    perturb_per_tensor_,
    sam_gradients,
    stage_schedule,
)
from tests.conftest import CHANCE_AV_DIGITS, method_and_batch, short_config, train_briefly

FIXTURES = Path(__file__).parent / "fixtures"
ABLATIONS = ("mie_no_sam", "mie_no_gm", "mie_plain", "mie_no_a_gm", "mie_no_v_gm")
FAST = {"train.max_steps_per_epoch": 6}
# Short learning runs: one audio stage then one visual stage; the audio pair tone is learned within ~12 steps at
# this rate (without mixup, which slows the first steps down).
LEARN = {"train.max_steps_per_epoch": 12, "train.lr": 0.03, "method.mixup_alpha": 0.0}


# -- the modification matrix T (Eq. 4) ------------------------------------------------------------------


def test_T_matches_hand_computation_on_a_rotated_spectrum():
    tau = 0.4
    c, s = math.cos(0.3), math.sin(0.3)
    v = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    lam = torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)
    moment = v @ torch.diag(lam) @ v.T
    # Sigma = exp(-tau (lam - 1) / 3) = (e^-0.4, e^-0.4/3, 1)
    sigma = torch.tensor([math.exp(-0.4), math.exp(-0.4 / 3), 1.0], dtype=torch.float64)
    expected = v @ torch.diag(sigma) @ v.T
    t = flat_modification_matrix(moment, tau)
    torch.testing.assert_close(t, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(t, t.T)
    eig = torch.linalg.eigvalsh(t)
    assert eig.min() >= math.exp(-tau) - 1e-12 and eig.max() <= 1 + 1e-12


def test_T_of_a_rank_one_moment_damps_only_that_direction():
    # Official per-batch moment: xbar xbar^T (rank 1) -> eigenvalues (|x|^2, 0, 0) -> T = I + (e^-tau - 1) u u^T.
    x = torch.tensor([1.0, 2.0, 2.0])
    u = x / 3.0
    t = flat_modification_matrix(torch.outer(x, x), tau=1.3)
    torch.testing.assert_close(t, torch.eye(3) + (math.exp(-1.3) - 1) * torch.outer(u, u), atol=1e-6, rtol=0)
    assert t.dtype == torch.float32


@pytest.mark.parametrize("moment", [2.5 * torch.eye(4), torch.zeros(3, 3), torch.ones(1, 1)])
def test_T_is_identity_when_all_singular_values_are_equal(moment):
    t = flat_modification_matrix(moment, tau=20.0)
    assert torch.equal(t, torch.eye(moment.shape[0]))


def test_T_eigenvalues_lie_in_exp_minus_tau_to_one_for_random_moments():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 8, generator=g)
    moment = x.T @ x
    for tau in (1e-3, 0.4, 20.0, 100.0):
        eig = torch.linalg.eigvalsh(flat_modification_matrix(moment, tau).double())
        assert eig.min() >= math.exp(-tau) - 1e-6 and eig.max() <= 1 + 1e-6
        assert eig.max() == pytest.approx(1.0, abs=1e-5) and eig.min() == pytest.approx(math.exp(-tau), abs=1e-5)


def test_T_rejects_a_non_square_matrix():
    with pytest.raises(ValueError, match="square"):
        flat_modification_matrix(torch.ones(2, 3), 0.4)


def test_input_moment_of_linear_and_conv_layers():
    lin = nn.Linear(2, 5)
    x = torch.tensor([[1.0, 3.0], [3.0, 1.0]])  # batch mean (2, 2)
    torch.testing.assert_close(input_moment(lin, x), torch.full((2, 2), 4.0, dtype=torch.float64))
    conv = nn.Conv2d(1, 4, kernel_size=2, stride=1, padding=0, bias=False)
    img = torch.arange(9.0).reshape(1, 1, 3, 3)
    batch = torch.cat([img, 3 * img])  # batch mean = 2 * img
    mean = 2 * img[0, 0]
    patches = torch.stack([mean[i : i + 2, j : j + 2].reshape(-1) for i in range(2) for j in range(2)]).double()
    torch.testing.assert_close(input_moment(conv, batch), patches.T @ patches)


def test_modify_gradient_right_multiplies_weight_grads_and_reshapes_convs():
    conv = nn.Conv2d(2, 3, kernel_size=2)
    g = torch.randn(3, 2, 2, 2)
    conv.weight.grad = g.clone()
    conv.bias.grad = torch.ones(3)
    t = torch.randn(8, 8)
    modify_gradient_(conv.weight, t)
    torch.testing.assert_close(conv.weight.grad, (g.reshape(3, 8) @ t).reshape(3, 2, 2, 2))
    assert torch.equal(conv.bias.grad, torch.ones(3))


# -- SAM ------------------------------------------------------------------------------------------------


def test_textbook_sam_step_on_a_two_parameter_example():
    # L(a, b) = a^2 + 3 b^2 at (1, 1): g = (2, 6), ||g|| = sqrt(40); rho = 0.5 ->
    # eps = (0.158114, 0.474342); gradient at (1.158114, 1.474342) = (2.316228, 8.846050).
    a = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    loss, grads = sam_gradients([a, b], lambda: a**2 + 3 * b**2, rho=0.5)
    assert float(loss) == pytest.approx(4.0)
    assert float(grads[0]) == pytest.approx(2.316228, abs=1e-6)
    assert float(grads[1]) == pytest.approx(8.846050, abs=1e-6)
    assert a.detach().item() == 1.0 and b.detach().item() == 1.0  # restored exactly


def test_official_per_tensor_perturbation_on_a_two_parameter_example():
    # Per-tensor normalisation: each scalar moves by rho * sign(g), whatever the other gradient; never undone.
    a, b, c = torch.tensor(1.0), torch.tensor(1.0), torch.tensor(1.0)
    perturb_per_tensor_([a, b, c], [torch.tensor(2.0), torch.tensor(-6.0), torch.tensor(0.0)], rho=0.5)
    assert (float(a), float(b), float(c)) == (1.5, 0.5, 1.0)


def _official_sam_grads(perturb) -> list[torch.Tensor]:
    """Gradients of ``0.7 CE(head(enc(x))) + 0.3 CE(head_perturbed(f))`` with ``perturb`` applied between the
    forward and the second head pass, as ``train_CREMA.py`` 86-136 (a conv encoder, a two-Linear head)."""
    g = torch.Generator().manual_seed(3)
    conv1, conv2 = nn.Conv2d(2, 3, 3, padding=1, bias=False).double(), nn.Conv2d(3, 4, 3, bias=False).double()
    lin1, lin2 = nn.Linear(4, 5).double(), nn.Linear(5, 3).double()
    for p in (conv1.weight, conv2.weight, lin1.weight, lin1.bias, lin2.weight, lin2.bias):
        p.data = torch.randn(p.shape, generator=g, dtype=torch.float64)
    x, y = torch.randn(6, 2, 5, 5, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    params = [conv1.weight, conv2.weight, lin1.weight, lin1.bias, lin2.weight, lin2.bias]
    f = conv2(torch.relu(conv1(x))).mean(dim=(2, 3))
    loss_ori = F.cross_entropy(lin2(torch.relu(lin1(f))), y)
    grads = torch.autograd.grad(loss_ori, params, retain_graph=True)
    perturb(params, grads, 0.5)
    loss = 0.7 * loss_ori + 0.3 * F.cross_entropy(lin2(torch.relu(lin1(f))), y)
    return list(torch.autograd.grad(loss, params))


def test_official_perturbation_rebinds_the_weights_as_the_code_does():
    """Issue #12 item 4. ``param.data = param.data + noise`` (the code, and ``perturb_per_tensor_``) reaches
    the backward pass of a graph recorded before it through conv weights (saved as the parameter) but not through
    nn.Linear weights (saved as the old ``weight.t()``). Expected by hand: the head's gradient is 0.7 x the
    gradient at the old head + 0.3 x the gradient at the perturbed head; the feature gradient, the same mix,
    goes back through conv2 at its perturbed weight; conv weight gradients use the unperturbed activations."""
    got = _official_sam_grads(perturb_per_tensor_)

    g = torch.Generator().manual_seed(3)
    shapes = [(3, 2, 3, 3), (4, 3, 3, 3), (5, 4), (5,), (3, 5), (3,)]
    w1, w2, a1, b1, a2, b2 = (torch.randn(s, generator=g, dtype=torch.float64) for s in shapes)
    x, y = torch.randn(6, 2, 5, 5, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    leaves = [t.requires_grad_() for t in (w1, w2, a1, b1, a2, b2)]

    def head(f, a1, b1, a2, b2):
        return F.linear(torch.relu(F.linear(f, a1, b1)), a2, b2)

    f = F.conv2d(torch.relu(F.conv2d(x, w1, padding=1)), w2).mean(dim=(2, 3))
    grads = torch.autograd.grad(F.cross_entropy(head(f, a1, b1, a2, b2), y), leaves)
    w2p, a1p, b1p, a2p, b2p = (t.detach() + 0.5 * gr / gr.norm() for t, gr in zip(leaves[1:], grads[1:]))
    fd = f.detach().requires_grad_()
    old = [a1, b1, a2, b2]
    new = [t.requires_grad_() for t in (a1p, b1p, a2p, b2p)]
    g_old = torch.autograd.grad(0.7 * F.cross_entropy(head(fd, *old), y), [fd, *old])
    g_new = torch.autograd.grad(0.3 * F.cross_entropy(head(fd, *new), y), [fd, *new])
    g_feat = g_old[0] + g_new[0]
    # the encoder's backward with conv2 at w2p; forward activations (and conv1's ReLU mask) from w1, w2
    w2p.requires_grad_()
    surrogate = F.conv2d(torch.relu(F.conv2d(x, w1, padding=1)), w2p).mean(dim=(2, 3))
    g_w1, g_w2 = torch.autograd.grad(surrogate, [w1, w2p], g_feat)
    expected = [g_w1, g_w2] + [o + n for o, n in zip(g_old[1:], g_new[1:])]
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)

    @torch.no_grad()
    def in_place(params, grads, rho):
        for p, gr in zip(params, grads):
            p.data.add_(gr * (rho / gr.norm()))

    # Perturbing in place (the suite before the fix) also moves the weights nn.Linear saved: fc1 and conv differ.
    other = _official_sam_grads(in_place)
    for i in (0, 1, 2):
        assert (other[i] - expected[i]).norm() > 1e-3 * expected[i].norm()


def test_fusions_by_hand():
    logits = {"audio": torch.tensor([[2.0, 0.0]]), "visual": torch.tensor([[0.0, 0.0]])}
    # H_audio = 0.365335, H_visual = ln 2 -> w_audio = 1 / (1 + exp(-(0.693147 - 0.365335))) = 0.581227
    torch.testing.assert_close(entropy_weighted_fusion(logits), torch.tensor([[1.162454, 0.0]]), atol=2e-6, rtol=0)
    probs = torch.softmax(mean_softmax_fusion(logits), dim=1)
    expected = (torch.softmax(logits["audio"], 1) + torch.softmax(logits["visual"], 1)) / 2
    torch.testing.assert_close(probs, expected)


# -- schedule and configuration -------------------------------------------------------------------------


def test_stage_schedule_official_lists_and_automatic_division():
    crema = stage_schedule(450, ("audio", "visual"), (25, 50) * 6)
    assert [s.modality for s in crema[:3]] == ["audio", "visual", "audio"] and len(crema) == 12
    assert (crema[1].start, crema[1].end, crema[-1].end) == (25, 74, 449)
    nv = stage_schedule(300, ("depth", "rgb", "flow"), (50,) * 6)
    assert [s.modality for s in nv] == ["depth", "rgb", "flow"] * 2
    assert [s.epochs for s in stage_schedule(6, ("audio", "visual"))] == [1, 2, 1, 2]
    assert [s.epochs for s in stage_schedule(10, ("audio", "visual"))] == [2, 3, 2, 3]
    assert [s.epochs for s in stage_schedule(1, ("audio", "visual"))] == [1]
    with pytest.raises(ValueError, match="sums to 75 epochs but train.epochs=6"):
        stage_schedule(6, ("audio", "visual"), (25, 50))


def test_config_defaults_ablations_and_errors():
    assert METHODS.resolve("igm") == "mie"
    cfgs = {n: build_config(n, "av_digits").method_cfg for n in ("mie", *ABLATIONS)}
    assert (cfgs["mie"].use_sam, cfgs["mie"].use_gm, cfgs["mie"].gm_skip_source) == (True, True, -1)
    assert (cfgs["mie_no_sam"].use_sam, cfgs["mie_no_gm"].use_gm) == (False, False)
    assert (cfgs["mie_plain"].use_sam, cfgs["mie_plain"].use_gm) == (False, False)
    assert (cfgs["mie_no_a_gm"].gm_skip_source, cfgs["mie_no_v_gm"].gm_skip_source) == (0, 1)
    with pytest.raises(ConfigError, match="method.tau"):
        build_config("mie", "av_digits", 0, {"method.tau": 0})
    with pytest.raises(ConfigError, match="method.head_dims"):
        build_config("mie", "av_digits", 0, {"method.head_dims": (256, 0)})
    with pytest.raises(ValueError, match="stage_order"):
        build_run(short_config("mie", 2, **{"method.stage_order": ("audio",)}))
    with pytest.raises(ValueError, match="train.epochs=3"):
        build_run(short_config("mie", 2, **{"method.stage_epochs": (1, 2)}))


# -- training mechanics ---------------------------------------------------------------------------------


def _params(model, modality):
    sd = model.state_dict()
    return {k: v.clone() for k, v in sd.items() if k.startswith((f"encoders.{modality}.", f"heads.{modality}."))}


def _changed(before, model):
    sd = model.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, sd[k])}


@pytest.mark.slow
def test_each_stage_updates_only_its_own_modality():
    method, batch = method_and_batch("mie", 2, **FAST)
    model = method.model
    for epoch, (trained, frozen) in enumerate([("audio", "visual"), ("visual", "audio")]):
        method.on_epoch_start(epoch)
        assert method.stage.modality == trained
        before_t, before_f = _params(model, trained), _params(model, frozen)
        for step in range(2):
            method.training_step(batch, step)
        assert not _changed(before_f, model), f"{frozen} changed during the {trained} stage"
        changed = _changed(before_t, model)
        assert any(k.startswith(f"heads.{trained}.") for k in changed)
        assert any(k.startswith(f"encoders.{trained}.") for k in changed)
    assert set(method.T) == {"fc1", "fc2", "fc3"}  # built from audio for the visual stage


@pytest.mark.slow
def test_gradient_reaching_the_optimiser_is_raw_gradient_times_T():
    overrides = {**FAST, "method.use_sam": False, "method.mixup_alpha": 0.0}
    method, batch = method_and_batch("mie", 2, **overrides)
    method.on_epoch_start(0)
    for step in range(3):  # train audio a little so its moments are not those of the initial network
        method.training_step(batch, step)
    method.on_epoch_start(1)  # visual stage: T from audio
    head = method.model.heads["visual"]
    assert all((method.T[n] - torch.eye(method.T[n].shape[0])).abs().max() > 1e-3 for n in ("fc1", "fc2", "fc3"))
    # raw gradient: plain CE backward on a copy of the model, same batch
    ref = copy.deepcopy(method.model)
    ref.train()
    loss = nn.functional.cross_entropy(ref.branch("visual", batch["visual"])[1], batch["label"])
    loss.backward()
    seen = {}

    def capture(opt, args, kwargs):
        for n in ("fc1", "fc2", "fc3"):
            seen[n] = (getattr(head, n).weight.grad.clone(), getattr(head, n).bias.grad.clone())
        seen["enc"] = next(method.model.encoders["visual"].parameters()).grad.clone()

    method.optimizer.register_step_pre_hook(capture)
    method.training_step(batch, 0)
    for n in ("fc1", "fc2", "fc3"):
        raw_w, raw_b = getattr(ref.heads["visual"], n).weight.grad, getattr(ref.heads["visual"], n).bias.grad
        torch.testing.assert_close(seen[n][0], raw_w @ method.T[n], atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(seen[n][1], raw_b, atol=1e-6, rtol=1e-4)  # biases untouched
        assert not torch.allclose(seen[n][0], raw_w, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(seen["enc"], next(ref.encoders["visual"].parameters()).grad, atol=1e-6, rtol=1e-4)


@pytest.mark.slow
def test_gm_scope_reaches_conv_layers_deep_to_shallow():
    setup = build_run(short_config("mie", 2, **FAST, **{"method.gm_scope": 0.3}))
    method = setup.method
    names = method.gm_layer_names("visual")
    assert names[-3:] == ["fc1", "fc2", "fc3"] and any(n.startswith("encoder.trunk.layer4") for n in names)
    assert not any(n.startswith("encoder.trunk.layer1") for n in names)
    assert build_run(short_config("mie", 2, **{"method.gm_scope": 0.0})).method.gm_layer_names("visual") == []
    method.on_epoch_start(0)
    method.on_epoch_start(1)
    # conv layers whose shapes match across modalities get a T of size C_in*k*k
    conv = [n for n in method.T if n.startswith("encoder.")]
    assert conv and all(
        method.T[n].shape[0] == dict(method.model.modality_modules("visual"))[n].weight[0].numel() for n in conv
    )


# -- short runs -----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mie", *ABLATIONS])
def test_mie_and_ablations_learn_above_chance(name):
    row = train_briefly(name, epochs=2, **LEARN)
    assert row["test_acc[best_val]"] > CHANCE_AV_DIGITS + 0.05
    assert row["test_acc_audio[last]"] > CHANCE_AV_DIGITS + 0.05


@pytest.mark.slow
def test_paper_variant_learns_above_chance():
    # 24 steps per stage: at 12 the harder av_digits of #13 leaves the paper variant at .13-.16 depending on the
    # thread count (a coin flip against the bound); at 24 it reaches ~.51
    learn = {**LEARN, "train.max_steps_per_epoch": 24}
    row = train_briefly("mie", epochs=2, **learn, **{"method.variant": "paper", "method.rho": 0.05})
    assert row["test_acc[best_val]"] > CHANCE_AV_DIGITS + 0.05
    assert row["label"] == "mie[paper]"


@pytest.mark.slow
def test_resume_round_trip_and_artifacts(tmp_path):
    from benchmark.results import ResultStore

    # restart_select=val: the best checkpoint each stage restarts from must survive the resume too
    over = {**FAST, "method.stage_epochs": (1, 2, 1), "method.restart_select": "val", "train.checkpoint": True}
    cfg = short_config("mie", 4, **over)
    full = ResultStore(tmp_path / "a")
    row_full = fit(cfg, full, progress=False)
    cut = ResultStore(tmp_path / "b")
    with pytest.raises(InterruptedError):
        fit(cfg, cut, progress=False, stop_after_epoch=2)  # mid-stage: T comes back from extra_state
    state = torch.load(cut.checkpoint_path(cfg.run_id), weights_only=False)["method"]
    assert state["stage"] == 1 and set(state["T"]) == {"fc1", "fc2", "fc3"} and state["best_state"] is not None
    row_resumed = fit(cfg, cut, progress=False)
    for key in ("test_acc[last]", "test_acc_visual[last]", "test_acc[best_val]"):
        assert row_resumed[key] == row_full[key]
    arts = [json.loads((s.run_dir(cfg.run_id) / "history.json").read_text())["artifacts"] for s in (full, cut)]
    assert arts[0]["stages"] == arts[1]["stages"] and arts[0]["grad_cosine"] == arts[1]["grad_cosine"]

    art = arts[0]  # well-formed artefacts (common.md schema)
    assert [s["modality"] for s in art["stages"]] == ["audio", "visual", "audio"]
    assert [s["end_epoch"] for s in art["stages"]] == [1, 3, 4]
    for s in art["stages"]:
        assert {"stage", "modality", "end_epoch", "test_acc", "val_acc", "test_acc_audio", "test_acc_visual"} <= set(s)
        assert 0 <= s["test_acc"] <= 1
    assert set(art["initial"]) == {"test_acc", "val_acc"}
    for m in ("audio", "visual"):
        sv = art["singular_values"][m]
        # fc1's input is the encoder feature (8 x resnet_width channels), fc2's and fc3's the head's 256 and 64
        assert [len(sv[n]) for n in ("fc1", "fc2", "fc3")] == [8 * cfg.model.resnet_width, 256, 64]
        for v in sv.values():
            assert all(a >= b >= 0 for a, b in zip(v, v[1:])) and v[0] > 0
    assert [(g["stage"], g["epoch"]) for g in art["grad_cosine"]] == [(1, 2), (1, 3), (2, 4)]
    assert all(-1 <= g["cosine"] <= 1 and g["steps"] == FAST["train.max_steps_per_epoch"] for g in art["grad_cosine"])
    assert [t["source"] for t in art["t_build"]] == ["audio", "visual"]


# -- robust decomposition (a LAPACK solver that fails to converge) -----------------------------------------


def _degenerate_moment() -> torch.Tensor:
    """The layer4.1.conv1 moment of ``gm_scope=0.3`` on av_digits (rank 2, 1067 of 1152 rows zero), stored as
    its unfolded patches P (moment = P^T P): the shape of the matrix MKL's syevd failed on (issue #11)."""
    patches = torch.from_numpy(np.load(FIXTURES / "mie_degenerate_moment.npz")["patches"])
    return patches.T @ patches


def _expected_t(moment: torch.Tensor, tau: float) -> torch.Tensor:
    """Closed form for a PSD moment of rank r with a zero eigenvalue: ``T = I + sum_i (exp(-tau l_i / l_max) - 1)
    v_i v_i^T`` over the non-zero eigenpairs, which come from the small r x r problem of the patches."""
    patches = torch.from_numpy(np.load(FIXTURES / "mie_degenerate_moment.npz")["patches"])
    _, s, vh = torch.linalg.svd(patches, full_matrices=False)
    lam = s**2
    sigma = torch.exp(-tau * lam / lam.max())
    return torch.eye(moment.shape[0], dtype=torch.float64) + (vh.T * (sigma - 1)) @ vh


def _failing_solver(m: torch.Tensor):
    raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge (forced by the test)")


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(mie.EIGH_SOLVERS)))
def test_every_fallback_solver_gives_the_same_T(monkeypatch, index):
    moment = _degenerate_moment()
    name, solver = mie.EIGH_SOLVERS[index]
    # every solver before this one fails, as syevd did on an AMD EPYC machine
    chain = tuple((f"failing {i}", _failing_solver) for i in range(index)) + ((name, solver),)
    monkeypatch.setattr(mie, "EIGH_SOLVERS", chain)
    t = flat_modification_matrix(moment, tau=1.3)
    assert torch.allclose(t, _expected_t(moment, 1.3), atol=1e-9), name


def test_decomposition_failure_without_fallback_is_reported(monkeypatch):
    monkeypatch.setattr(mie, "EIGH_SOLVERS", (("torch.linalg.eigh", _failing_solver),))
    with pytest.raises(torch.linalg.LinAlgError, match="1152, 1152.*failed to converge"):
        flat_modification_matrix(_degenerate_moment(), tau=1.3)


@pytest.mark.slow
def test_stage_change_survives_a_failing_first_solver(monkeypatch):
    # the MIE run itself: T is built at the stage change although the first solver raises
    chain = (("torch.linalg.eigh", _failing_solver), *mie.EIGH_SOLVERS[1:])
    monkeypatch.setattr(mie, "EIGH_SOLVERS", chain)
    setup = build_run(short_config("mie", 2, **FAST, **{"method.gm_scope": 0.3}))
    setup.method.on_epoch_start(0)
    setup.method.on_epoch_start(1)
    assert any(n.startswith("encoder.") for n in setup.method.T)
