"""ReconBoost: the boosting loss against hand-computed values, the stage schedule, the detached (official)
versus gradient-carrying (paper) MSE term, the released empty ensemble and second forward of the previous learner,
initialisation from the unimodal runs, and a short run that learns. Whole released stages: test_golden_reconboost.py."""

import math

import pytest
import torch
from conftest import CHANCE_AV_DIGITS, first_batch, short_config, train_briefly

from benchmark.config import ConfigError
from benchmark.trainer import build_run
from methods.reconboost import boosting_loss

F_M = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
OTHERS = torch.tensor([[1.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
Y = torch.tensor([0, 1])


def test_boosting_loss_reference_vector():
    # baselines.md section 10 (w1 = 5, w2 = 1, C = 3): per sample [0.365520, 0.751905], mean 0.558713.
    assert float(boosting_loss(F_M, OTHERS, Y, 5.0, 1.0)) == pytest.approx(0.558713, abs=1e-6)
    assert float(boosting_loss(F_M[:1], OTHERS[:1], Y[:1], 5.0, 1.0)) == pytest.approx(0.365520, abs=1e-6)
    assert float(boosting_loss(F_M[1:], OTHERS[1:], Y[1:], 5.0, 1.0)) == pytest.approx(0.751905, abs=1e-6)


def test_boosting_loss_hand_computed():
    # Sample 0 by hand: log p_y = 2 - log(e^2 + 2), q_y = e / (2e + 1); loss = (-w1 + w2 q_y) log p_y / 3.
    logp = 2 - math.log(math.e**2 + 2)
    q = math.e / (2 * math.e + 1)
    assert float(boosting_loss(F_M[:1], OTHERS[:1], Y[:1], 4.0, 2.0)) == pytest.approx((-4 + 2 * q) * logp / 3)
    # w2 = 0: plain cross-entropy scaled by w1 / C; the other learners do not matter.
    ce = torch.nn.functional.cross_entropy(F_M, Y)
    assert float(boosting_loss(F_M, torch.randn(2, 3), Y, 3.0, 0.0)) == pytest.approx(float(ce) * 3.0 / 3)
    # No gradient reaches the other learners' logits.
    others = OTHERS.clone().requires_grad_(True)
    logits = F_M.clone().requires_grad_(True)
    boosting_loss(logits, others, Y, 5.0, 1.0).backward()
    assert others.grad is None and logits.grad is not None


def test_schedule_and_stage_lr():
    cfg = short_config("reconboost", 6, **{"method.init_from": "scratch", "train.lr": 0.01})
    assert (cfg.method_cfg.epochs_per_stage, cfg.method_cfg.correct_epoch) == (1, 1)  # av_digits defaults
    method = build_run(cfg).method
    got = [(*method.schedule(e), method.stage_modality(method.schedule(e)[0])) for e in range(6)]
    expected = [(0, 1, "audio"), (0, 2, "audio"), (1, 1, "visual"), (1, 2, "visual"), (2, 1, "audio")]
    assert got == [*expected, (2, 2, "audio")]
    assert method.stage_lr(29) == pytest.approx(0.01) and method.stage_lr(30) == pytest.approx(0.001)


def test_official_defaults():
    from benchmark.registry import METHODS

    cls = METHODS.get("reconboost")
    c = cls.Config()
    assert (c.w1, c.w2, c.alpha, c.epochs_per_stage, c.correct_epoch, c.boost_rate) == (5.0, 1.0, 0.5, 4, 4, 1.0)
    assert (c.stage_lr_step, c.stage_lr_gamma, c.variant, c.init_from) == (30, 0.1, "official", "unimodal_runs")
    star = cls.dataset_defaults["*"]
    assert (star["train.lr"], star["train.weight_decay"], star["train.batch_size"]) == (0.01, 5e-4, 64)
    assert cls.dataset_defaults["crema_d"]["train.epochs"] == 800  # 100 stages x (4 + 4) epochs


def test_scheduler_must_be_none():
    with pytest.raises(ValueError, match="stage_lr_step"):
        build_run(short_config("reconboost", 1, **{"method.init_from": "scratch", "train.scheduler": "step"}))
    with pytest.raises(ConfigError, match="epochs_per_stage"):
        short_config("reconboost", 1, **{"method.epochs_per_stage": 0})


def _phase1_grads(variant: str, alpha: float) -> dict[str, torch.Tensor]:
    """Gradients handed to the optimiser by the first step of stage 1 (visual; GA term active)."""
    torch.manual_seed(0)
    cfg = short_config("reconboost", 4, **{"method.init_from": "scratch", "method.variant": variant})
    cfg.method_cfg.alpha = alpha
    method = build_run(cfg).method
    for e in range(3):  # stage 0 phase 1, stage 0 phase 2, stage 1 phase 1
        method.on_epoch_start(e)
    assert method.model.members() == ["audio"] and method.stage_modality(1) == "visual"
    method.model.train()
    batch = first_batch(method, "train", shuffle=False, batch_size=16)
    seen = {}
    params = dict(method.model.named_parameters())
    method.optimizer.step = lambda: seen.update({n: p.grad.clone() for n, p in params.items() if p.grad is not None})
    stats = method.training_step(batch, 0)
    assert stats["ga_loss"] > 0
    return seen


def test_official_mse_term_carries_no_gradient_paper_does():
    base = _phase1_grads("official", 0.0)
    official = _phase1_grads("official", 0.5)
    paper = _phase1_grads("paper", 0.5)
    assert base and set(base) == set(official) == set(paper)
    # Only the visual learner's encoder and the shared head receive gradients in phase 1.
    assert all(n.startswith(("learners.visual.encoder.", "head.")) for n in base)
    assert all(torch.equal(base[n], official[n]) for n in base)
    assert any(not torch.allclose(base[n], paper[n]) for n in base)


def test_empty_ensemble_is_the_released_constant_column():
    # train.py ~332: from scratch the stage-0 ensemble is c0 as a (B, 1) column; softmax over one column is 1, so
    # q_y = 1 and the loss is (-w1 + w2) log p_y / C (a uniform q over C classes would give (-w1 + w2 / C) ...).
    logp_y = torch.log_softmax(F_M, 1).gather(1, Y.view(-1, 1)).squeeze(1)
    for c0 in (torch.zeros(2, 1), torch.full((2, 1), 0.37)):
        got = float(boosting_loss(F_M, c0, Y, 5.0, 1.0))
        assert got == pytest.approx(float(((-5.0 + 1.0) * logp_y / 3).mean()))
    method = build_run(short_config("reconboost", 2, **{"method.init_from": "scratch", "method.w1": 5.0})).method
    method.on_epoch_start(0)
    assert method.model.members() == []
    method.model.train()
    batch = first_batch(method, "train", shuffle=False, batch_size=16)
    with torch.no_grad():
        ce = float(
            torch.nn.functional.cross_entropy(method.model.learner_logits("audio", batch["audio"]), batch["label"])
        )
    n = method.ctx.info.num_classes
    assert method.training_step(batch, 0)["boost_loss"] == pytest.approx((5.0 - 1.0) * ce / n, rel=1e-5)


def test_previous_learner_runs_twice_per_step_in_train_mode():
    # train.py ~348: after the ensemble forward, the previous stage's learner runs again (train mode) for the MSE
    # term, so its BatchNorm statistics are updated twice per phase-1 step.
    method = build_run(short_config("reconboost", 4, **{"method.init_from": "scratch"})).method
    for e in range(3):  # stage 0 phase 1, stage 0 phase 2, stage 1 phase 1 (visual; previous learner: audio)
        method.on_epoch_start(e)
    method.model.train()
    batch = first_batch(method, "train", shuffle=False, batch_size=16)

    def tracked(m):
        bns = [b for b in method.model.learners[m].modules() if isinstance(b, torch.nn.BatchNorm2d)]
        return [int(b.num_batches_tracked) for b in bns]

    audio, visual = tracked("audio"), tracked("visual")
    method.training_step(batch, 0)
    assert tracked("audio") == [n + 2 for n in audio]
    assert tracked("visual") == [n + 1 for n in visual]


@pytest.mark.slow
def test_unimodal_runs_initialise_learners(store):
    """The unimodal runs are declared (requires), trained by the runner first; reconboost only loads them."""
    from benchmark.runner import resolve, run_inline
    from benchmark.suites import RunSpec

    over = {"train.max_steps_per_epoch": 2, "method.unimodal_epochs": 1, "train.checkpoint": False}
    cfg = short_config("reconboost", 1, **over)
    assert [(d.method, d.method_cfg.modality, d.train.epochs, d.train.save_model) for d in cfg.requires] == [
        ("unimodal", "audio", 1, True),
        ("unimodal", "visual", 1, True),
    ]
    with pytest.raises(RuntimeError, match="needs the finished unimodal run"):
        build_run(cfg, store)  # nothing trains them behind the runner's back
    plan = resolve([RunSpec("reconboost", "av_digits", 0, {"train.epochs": 1, **over})])
    assert [c.method for c in plan] == ["unimodal", "unimodal", "reconboost"]
    assert run_inline(plan, store, progress=False)[-1]["status"] == "ok"
    setup = build_run(cfg, store)
    method = setup.method
    for m in ("audio", "visual"):
        ucfg = method.unimodal_config(m)
        assert store.status(ucfg.run_id) == "ok"  # the unimodal row is in the store
        state = torch.load(store.run_dir(ucfg.run_id) / "model.pt", weights_only=True)
        mine = method.model.learners[m].state_dict()
        assert set(state) == set(mine) and all(torch.equal(state[k], mine[k]) for k in state)
    assert method.model.members() == ["audio", "visual"]
    (store.run_dir(method.unimodal_config("audio").run_id) / "model.pt").write_bytes(b"not a model")
    with pytest.raises(RuntimeError, match="cannot read .*model.pt"):
        build_run(cfg, store)


def test_unimodal_init_without_store_is_an_error():
    with pytest.raises(ValueError, match="init_from=scratch"):
        build_run(short_config("reconboost", 1))


@pytest.mark.slow
def test_short_run_learns_above_chance():
    row = train_briefly("reconboost", epochs=2, **{"method.init_from": "scratch", "train.max_steps_per_epoch": 20})
    assert row["test_acc[last]"] > 2 * CHANCE_AV_DIGITS
    assert row["test_acc_audio[last]"] > 2 * CHANCE_AV_DIGITS
