"""Golden steps: ``smv`` against the released SMV epoch loop (``code/sample_level.py``; scripts/golden/smv.py).

Four epochs of Adam on 12 samples, float64, from identical weights: two warm-up epochs on the original set,
then two on sets re-sampled from the valuations after epochs 2 and 3 (1-based). Compared: every per-sample
Shapley value, every re-sampled set (its samples and which modality each copy keeps, in order), the parameters
and buffers at the end. The stored valuations give every value from -0.5 to 1.5, so every copy bin occurs.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.golden.format import load_fixture
from tests.golden.harness import assert_close, run_from_fixture


def _run(fx: Any, overrides: dict[str, Any] | None = None) -> tuple[Any, dict[str, torch.Tensor]]:
    seen: dict[str, torch.Tensor] = {}

    def prepare(method) -> None:
        valuate, resample = method.valuate, method.resample

        def recorded_valuate(dataset):
            phi = valuate(dataset)
            seen.update({f"phi_{m}": v.clone() for m, v in phi.items()})
            return phi

        def recorded_resample(epoch: int):
            ds = resample(epoch)
            for m in method.modalities:
                seen[f"phi_{m}_{epoch}"] = seen.pop(f"phi_{m}")
            seen[f"index_{epoch}"], seen[f"solo_{epoch}"] = ds.indices.clone(), ds.solo.clone()
            return ds

        method.valuate, method.resample = recorded_valuate, recorded_resample

    run = run_from_fixture("smv", fx, overrides, prepare=prepare)
    return run, seen


def test_fixture_spans_the_warmup_boundary_and_every_copy_bin():
    fx = load_fixture("smv")
    trace = fx.group("trace")
    warmup = fx.meta["suite_overrides"]["method.warmup"]
    assert sorted(k for k in trace if k.startswith("index_")) == [f"index_{warmup}", f"index_{warmup + 1}"]
    phi = torch.cat([v for k, v in trace.items() if k.startswith("phi_")])
    # copy bins (released datasets/dataloader.py:156-186): >= 1 none, 0.5 one, 0 two, -0.5 three
    assert {-0.5, 0.0, 0.5, 1.0, 1.5} == {float(v) for v in phi}


def test_resampling_and_steps_equal_the_released_code():
    fx = load_fixture("smv")
    trace = fx.group("trace")
    run, seen = _run(fx)
    assert sorted(seen) == sorted(trace)
    for key, expected in trace.items():
        if key.startswith("phi_"):
            assert torch.equal(seen[key].double(), expected), key
        else:
            assert torch.equal(seen[key], expected), key
    assert assert_close(run.state(), fx.group("final")) <= 1e-6


def test_resampling_one_epoch_early_fails_the_comparison():
    # warmup 1 re-samples after the first epoch: what the suite did before (re-sampling from warmup - 1)
    fx = load_fixture("smv")
    run, seen = _run(fx, {"method.warmup": 1})
    assert "index_1" in seen
    with pytest.raises(AssertionError, match="largest relative differences"):
        assert_close(run.state(), fx.group("final"))
