"""The GPU fast path, checked on the CPU: each option leaves a float32 step unchanged where it should.

Deferred loss reads (tensor losses, NaN still named with its step), the loaders' order and per-batch seeding with
worker processes (persistent or not), channels_last, the torch.compile wiring, bf16 autocast through every
method's extra passes and gradient edits (CPU autocast standing in for CUDA's).
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import short_config
from torch.utils.data import DataLoader

from benchmark.data import collate, epoch_order, make_loader
from benchmark.method import Method
from benchmark.registry import METHODS, table1_methods
from benchmark.trainer import NonFiniteLossError, StepStats, accelerate, build_run, encoder_modules, fit

TINY = {"model.resnet_width": 2, "train.max_steps_per_epoch": 3, "train.eval_batch_size": 512}


# -- loss reads ------------------------------------------------------------------------------------------------


def test_tensor_losses_leave_the_run_unchanged(monkeypatch):
    """A method returning ``loss.detach()`` (a tensor) gives the float32 run of one returning ``loss.item()``."""
    cfg = short_config("joint", epochs=2, **TINY)
    ref = fit(cfg, progress=False)
    joint = METHODS.get("joint")
    original = joint.training_step

    def tensor_step(self, batch, step):
        stats = original(self, batch, step)
        return {k: torch.tensor(v) for k, v in stats.items()}

    monkeypatch.setattr(joint, "training_step", tensor_step)
    out = fit(short_config("joint", epochs=2, **TINY), progress=False)
    keys = [k for k in ref if k.startswith(("test_", "val_"))]
    assert keys and all(ref[k] == out[k] for k in keys)


def test_deferred_reads_average_like_immediate_reads():
    losses = [0.5, 1.25, 2.0, 0.75, 3.0, 0.125, 1.0]
    every_step = StepStats(1, lambda s, v: AssertionError())
    windowed = StepStats(3, lambda s, v: AssertionError())
    for i, v in enumerate(losses):
        every_step.add(i, {"loss": v, "k": 2 * v})
        windowed.add(i, {"loss": torch.tensor(v), "k": torch.tensor(2 * v)})
    assert windowed.means() == pytest.approx(every_step.means(), rel=1e-12)
    assert every_step.means()["loss"] == pytest.approx(sum(losses) / len(losses))


def test_deferred_nan_stops_within_the_window_naming_its_step():
    seen = []
    stats = StepStats(4, lambda step, v: NonFiniteLossError(f"step {step + 1}"))
    with pytest.raises(NonFiniteLossError, match="step 6"):
        for step in range(20):
            seen.append(step)
            stats.add(step, {"loss": torch.tensor(float("nan") if step == 5 else 1.0)})
    assert seen[-1] == 7  # read at the end of the window of steps 4..7, not later


def test_nan_loss_still_fails_the_run_with_its_step(monkeypatch):
    joint = METHODS.get("joint")

    def nan_step(self, batch, step):
        return {"loss": torch.tensor(float("nan") if step == 1 else 1.0)}

    monkeypatch.setattr(joint, "training_step", nan_step)
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 2"):
        fit(short_config("joint", **TINY), progress=False)


# -- loaders ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [True, False])
def test_epoch_order_is_the_legacy_loaders_order(shuffle):
    data = list(range(37))
    for seed, epoch in ((0, 0), (3, 5), (11, 1_000_001)):
        gen = torch.Generator()
        gen.manual_seed(seed * 100_003 + epoch)
        legacy = DataLoader(data, batch_size=37, shuffle=shuffle, generator=gen)
        assert next(iter(legacy)).tolist() == epoch_order(37, shuffle, seed, epoch)[0]


def _batches(loader, epochs):
    out = []
    for e in epochs:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(e)
        out.append([b for b in loader])
    return out


def test_worker_batches_depend_on_seed_and_epoch_only():
    """With workers, random draws are seeded per batch: 1 or 2 workers, persistent or not, give the same batches,
    in the legacy loader's order; the global RNG of the main process is not consumed."""
    cfg = short_config("joint", **TINY)
    split = build_run(cfg).ctx.splits["train"]  # av_digits' training split draws its noise at every access
    sub = torch.utils.data.Subset(split, range(40))
    fresh = [[list(make_loader(sub, 16, shuffle=True, seed=1, epoch=e, num_workers=w)) for e in (0, 1)] for w in (1, 2)]
    state = torch.get_rng_state()
    kept = make_loader(sub, 16, shuffle=True, seed=1, epoch=0, num_workers=2, persistent_workers=True)
    reused = _batches(kept, (0, 1))
    assert torch.equal(state, torch.get_rng_state())
    for run in (fresh[1], reused):
        for e in (0, 1):
            for a, b in zip(fresh[0][e], run[e]):
                assert torch.equal(a["index"], b["index"]) and torch.equal(a["visual"], b["visual"])
    assert not torch.equal(fresh[0][0][0]["visual"], fresh[0][1][0]["visual"])  # epochs draw afresh
    order = [i for b in fresh[0][1] for i in b["index"].tolist()]
    base = [int(split[i]["index"]) for i in epoch_order(40, True, 1, 1)[0]]
    assert order == base
    assert collate(fresh[0][0][0]) is fresh[0][0][0]


# -- model options ---------------------------------------------------------------------------------------------


def _step_params(cfg, prepare) -> dict[str, torch.Tensor]:
    """Parameters after two float64 steps (float64: rounding differences between memory formats stay ~1e-15;
    in float32 BatchNorm over the tiny 2x2 maps of this toy model amplifies them to ~1e-3)."""
    setup = build_run(cfg)
    setup.method.model.double()
    prepare(setup.method)
    batch = next(setup.ctx.batches(setup.ctx.loader("train", epoch=0)))
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    setup.method.training_step(batch, 0)
    setup.method.training_step(batch, 1)
    return {k: v.detach().clone() for k, v in setup.method.model.state_dict().items()}


def test_channels_last_leaves_a_step_unchanged():
    cfg = short_config("joint", **TINY)
    ref = _step_params(cfg, lambda m: None)

    def channels_last(m: Method) -> None:
        accelerate(m.model, m.ctx.train, m.device, force_channels_last=True)
        convs = [p for p in m.model.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)

    out = _step_params(short_config("joint", **TINY), channels_last)
    assert ref.keys() == out.keys()
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=1e-9, atol=1e-12)


def test_channels_last_is_cuda_only_by_default():
    setup = build_run(short_config("joint", **TINY))
    accelerate(setup.method.model, setup.ctx.train, torch.device("cpu"))
    convs = [p for p in setup.method.model.parameters() if p.dim() == 4]
    assert all(p.is_contiguous() for p in convs)


@pytest.mark.slow
def test_compile_wraps_each_encoder_in_place():
    """train.compile: every encoder's forward compiled (dynamo's eager backend here: the wiring, not inductor);
    same outputs, same state_dict keys, and a deep copy (G-Blending's probes) runs its own parameters."""
    setup = build_run(short_config("mie", **TINY))
    model = setup.method.model.eval()
    keys = list(model.state_dict())
    encoders = encoder_modules(model)
    assert [id(e) for e in encoders] == [id(e) for e in model.encoders.values()]
    batch = next(setup.ctx.batches(setup.ctx.loader("val")))
    ref = model(batch).logits
    cfg = short_config("mie", **TINY, **{"train.compile": True})
    accelerate(model, cfg.train, torch.device("cpu"), compile_backend="eager")
    assert all("forward" in vars(e) for e in encoders) and all("forward" not in vars(h) for h in model.heads.values())
    assert list(model.state_dict()) == keys  # checkpoints and methods see the same module tree
    torch.testing.assert_close(model(batch).logits, ref, rtol=0, atol=0)
    copy = __import__("copy").deepcopy(model)
    with torch.no_grad():
        for p in copy.encoders.parameters():
            p.zero_()
    assert not torch.equal(copy(batch).logits, ref)  # the copy's zeroed encoders, not the original's
    torch.testing.assert_close(model(batch).logits, ref, rtol=0, atol=0)


def test_compile_without_an_encoder_is_an_error():
    cfg = short_config("joint", **TINY, **{"train.compile": True})
    with pytest.raises(ValueError, match="train.compile"):
        accelerate(torch.nn.Linear(2, 2), cfg.train, torch.device("cpu"))


def test_amp_is_on_by_default_and_only_acts_on_cuda():
    cfg = short_config("joint", **TINY)
    assert cfg.train.amp is True
    assert build_run(cfg).ctx.amp_enabled is False


# -- bf16 autocast through every method --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(table1_methods()) + ["mie_plain"])
def test_bf16_autocast_step_of_every_method(monkeypatch, name):
    """Two steps under bf16 autocast (CPU autocast stands in for CUDA's): finite loss, float32 parameters and
    gradients, every gradient edit applied to float32 tensors."""
    monkeypatch.setattr(Method, "autocast", lambda self: torch.autocast("cpu", dtype=torch.bfloat16))
    extra = METHODS.get(name).bench_overrides
    setup = build_run(short_config(name, **TINY, **extra, **{"train.batch_size": 16}))
    m = setup.method
    m.model.train()
    m.on_epoch_start(0)
    loader = m.train_loader(0)
    for step, batch in zip(range(2), setup.ctx.batches(loader)):
        stats = m.training_step(batch, step)
        assert math.isfinite(float(stats["loss"]))
    for p in m.model.parameters():
        assert p.dtype == torch.float32 and torch.isfinite(p).all()
        assert p.grad is None or (p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all())
