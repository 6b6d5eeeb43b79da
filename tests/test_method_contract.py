"""The method contract, checked for every registered method on tiny av_digits shapes.

* one training step: a finite ``loss``, the weights move, the model is left in train mode;
* checkpoint round trip: a fresh run loaded from a checkpoint holds the same model, optimiser, scheduler and
  method state as the run that saved it;
* resume: a run stopped after epoch 1 (a pre-emption) and resumed ends with exactly the history and weights of
  an uninterrupted 2-epoch run (exact: same seed, restored RNGs, one CPU thread, deterministic kernels).

A method added to ``methods/`` is picked up here without editing this file. Shapes are tiny (ResNet18 at width
2, one 16x16 frame, 2% val/test splits, one step per epoch), so the whole file stays well under a minute.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.checkpoint import load_checkpoint, save_checkpoint
from benchmark.config import RunConfig, build_config
from benchmark.method import eval_mode
from benchmark.registry import DATASETS, METHODS
from benchmark.results import ResultStore
from benchmark.trainer import build_run, fit

TINY: dict[str, Any] = {
    "train.max_steps_per_epoch": 1,
    "train.batch_size": 8,
    "train.eval_batch_size": 64,
    "train.save_model": True,
    "model.resnet_width": 2,
    "data.frames": 1,
    "data.val_fraction": 0.02,
    "data.test_fraction": 0.02,
}
# Work sizes of methods whose own loops would otherwise dominate (G-Blending's probes and loss passes).
WORK: dict[str, dict[str, Any]] = {
    "gblending": {"method.super_epoch": 2, "method.probe_steps": 1, "method.loss_batches": 1},
}


def tiny_config(name: str, epochs: int = 2, checkpoint: bool = False) -> RunConfig:
    """``name`` on tiny av_digits; the method's first expanded run (``unimodal``: audio) and its store-free
    overrides (``bench_overrides``: ReconBoost from scratch)."""
    cls = METHODS.get(name)
    base = build_config(name, "av_digits", 0, {**TINY, "train.epochs": epochs})
    info = DATASETS.get("av_digits")(base.data_cfg).info
    overrides = {**cls.expand(info)[0], **cls.bench_overrides, **WORK.get(name, {})}
    return build_config(
        name, "av_digits", 0, {**TINY, **overrides, "train.epochs": epochs, "train.checkpoint": checkpoint}
    )


def same(a: Any, b: Any, where: str = "state", skip: tuple[str, ...] = ()) -> None:
    """Exact equality of nested dicts / lists of tensors, arrays and numbers (NaN equals NaN); dict keys that
    end with one of ``skip`` are not compared."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype, where
        assert (
            torch.equal(a, b)
            or (torch.isnan(a) == torch.isnan(b)).all()
            and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
        ), where
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        for k in a:
            if not (skip and str(k).endswith(skip)):
                same(a[k], b[k], f"{where}[{k!r}]", skip)
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]", skip)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_eval_mode_restores_the_mode_also_on_an_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with eval_mode(model):
        assert not model.training and not model[1].training
    assert model.training and model[1].training
    model.eval()
    with pytest.raises(RuntimeError), eval_mode(model):
        model.train()  # a pass that changed the mode and then failed
        raise RuntimeError("boom")
    assert not model.training and not model[1].training


@pytest.mark.parametrize("name", METHODS.names())
def test_one_step_and_checkpoint_round_trip(name, tmp_path):
    method = build_run(tiny_config(name)).method
    method.model.train()
    method.on_epoch_start(0)
    batch = next(iter(method.ctx.batches(method.train_loader(0), 1)))
    before = {k: v.clone() for k, v in method.model.state_dict().items()}
    stats = method.training_step(batch, 0)
    assert math.isfinite(stats["loss"]) and all(isinstance(float(v), float) for v in stats.values())
    assert method.model.training, f"{name}: training_step left the model in eval mode"
    moved = [k for k, v in method.model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert moved, f"{name}: one training step changed no weight"

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, method, 0, [{"epoch": 1}], [0.5])
    fresh = build_run(tiny_config(name)).method
    assert load_checkpoint(path, fresh) == (1, [{"epoch": 1}], [0.5])
    same(fresh.model.state_dict(), method.model.state_dict(), "model")
    if method.optimizer is not None:
        same(fresh.optimizer.state_dict(), method.optimizer.state_dict(), "optimizer")
    if method.scheduler is not None:
        same(fresh.scheduler.state_dict(), method.scheduler.state_dict(), "scheduler")
    same(fresh.extra_state(), method.extra_state(), "extra_state")


@pytest.mark.parametrize("name", METHODS.names())
def test_resumed_run_equals_uninterrupted(name, tmp_path):
    cfg = tiny_config(name, epochs=2, checkpoint=True)
    whole_store, store = ResultStore(tmp_path / "whole"), ResultStore(tmp_path / "resumed")
    whole = fit(cfg, whole_store, progress=False)
    with pytest.raises(InterruptedError):
        fit(cfg, store, progress=False, stop_after_epoch=1)
    resumed = fit(cfg, store, progress=False)
    # every epoch's metrics and training statistics, and the method's artefacts except wall-clock durations
    # (MIE's ``t_build`` records seconds: ``moment_pass_s``, ``decomposition_s``)
    same(store.read_history(cfg.run_id), whole_store.read_history(cfg.run_id), "history", skip=("_s",))
    keys = [k for k in whole if k.startswith(("test_", "val_", "epoch["))]
    assert keys and {k: resumed[k] for k in keys} == {k: whole[k] for k in keys}
    weights = [torch.load(s.run_dir(cfg.run_id) / "model.pt", weights_only=True) for s in (store, whole_store)]
    same(*weights, "final weights")


def test_round_trip_check_catches_a_method_that_drops_its_state(tmp_path, monkeypatch):
    """The comparison can fail: PMR that forgets its prototypes on load is caught."""
    monkeypatch.setattr(METHODS.get("pmr"), "load_extra_state", lambda self, state: None)
    with pytest.raises(AssertionError, match="extra_state"):
        test_one_step_and_checkpoint_round_trip("pmr", tmp_path)
