"""Golden steps: ``domfn`` against the released DOMFN code (PyTorch branch; scripts/golden/domfn.py).

Three modalities of pre-extracted features (the released model's input), Adam in float64 from identical
weights, ``method.reference=mean`` (the PyTorch release's divergence reference, ``models/encoder.py:100-103``):

* ``domfn``: the released ``DomfnTrainer.train`` at batch size 1 for 16 steps, joint and unimodal steps
  interleaved (a unimodal step steps only the modality optimisers: the fusion head stays where it is);
* ``domfn_minibatch``: the suite's mini-batch rule against the released per-sample losses, averaged over
  batches of 4 (fully unimodal batches, which leave the fusion head alone, and mixed batches).
"""

from __future__ import annotations

import pytest
import torch

from tests.golden.format import load_fixture
from tests.golden.harness import assert_close, run_from_fixture


@pytest.mark.parametrize("name", ["domfn", "domfn_minibatch"])
def test_steps_equal_the_released_code(name):
    fx = load_fixture(name)
    joint = fx["trace/joint"]
    assert (joint == 0).any() and (joint > 0).any(), "fixture must span joint and unimodal steps"
    if name == "domfn_minibatch":
        assert ((joint > 0) & (joint < 1)).any(), "fixture must have a batch mixing both kinds of sample"
    run = run_from_fixture("domfn", fx)
    steps = torch.tensor([s["joint_frac"] for s in run.steps], dtype=torch.float64)
    assert torch.equal(steps, joint)
    assert assert_close(run.state(), fx.group("final")) <= 1e-6


def test_a_changed_hyper_parameter_fails_the_comparison():
    fx = load_fixture("domfn")
    run = run_from_fixture("domfn", fx, {"method.eta": 0.4})
    with pytest.raises(AssertionError, match="largest relative differences"):
        assert_close(run.state(), fx.group("final"))
