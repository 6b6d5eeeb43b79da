"""Conventions of the released code that the golden steps rely on (#12): epoch numbering of the modulation
windows and the released initialisation (``model.apply(weight_init)``) of joint, unimodal, OGM, AGM and PMR."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import short_config
from torch import nn

from benchmark.models import apply_official_init
from benchmark.trainer import build_run
from methods.agm import AgmConfig
from methods.ogm import OgmConfig
from methods.pmr import PmrConfig


@pytest.mark.parametrize(
    ("config", "first"),
    [
        (OgmConfig, 0),  # OGM-GE main.py: for epoch in range(args.epochs)
        (PmrConfig, 0),  # PMR main_Prototype_grad.py: for epoch in range(args.epochs)
        (AgmConfig, 1),  # AGM run/CREMAD_main.py: range(start_epoch, EPOCHS + 1), start_epoch = 1
    ],
)
def test_windows_count_epochs_as_the_released_loop(config, first):
    # the suite's epochs are 0-based; released epoch = suite epoch + first
    cfg = config(modulation_starts=0, modulation_ends=0)
    assert [cfg.in_window(e) for e in range(3)] == [first == 0, False, False]  # AGM 0:0 never modulates
    cfg = config(modulation_starts=2, modulation_ends=3)
    assert [cfg.in_window(e) for e in range(5)] == [e + first in (2, 3) for e in range(5)]


def _model(method: str, **overrides):
    # model.resnet_width 8: a 128-input concat head (768 weights), enough to read off the init's std
    return build_run(short_config(method, **{"model.resnet_width": 8, **overrides})).method.model


def _heads(model: nn.Module) -> list[nn.Linear]:
    head = model.fusion if hasattr(model, "fusion") else model.fc
    return [m for m in head.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize(
    ("method", "overrides"),
    [
        ("joint", {}),
        ("joint", {"model.fusion": "gated"}),
        ("unimodal", {"method.modality": "visual"}),
        ("ogm", {}),
        ("ogm_ge", {}),
        ("agm", {}),
        ("pmr", {}),
    ],
)
def test_heads_are_initialised_as_released(method, overrides):
    # weight_init: xavier-normal weights (std sqrt(2 / (fan_in + fan_out))), zero bias. PyTorch's default
    # nn.Linear init (Kaiming-uniform a = sqrt(5): std 1 / sqrt(3 fan_in), non-zero bias) fails both checks.
    torch.manual_seed(0)
    for layer in _heads(_model(method, **overrides)):
        fan_out, fan_in = layer.weight.shape
        assert torch.count_nonzero(layer.bias) == 0
        assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.15)


def _conv_bounds(model: nn.Module) -> list[tuple[float, float]]:
    """(largest |w|, Kaiming-uniform bound sqrt(6 / fan_out)) of every encoder conv kernel."""
    out = []
    for m in model.encoders.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
            out.append((float(m.weight.detach().abs().max()), math.sqrt(6 / fan_out)))
    return out


def test_agm_draws_conv_kernels_kaiming_uniform_and_ogm_kaiming_normal():
    # AGM's utils/function_tools.py:weight_init uses kaiming_uniform_; OGM-GE's (and PMR's) kaiming_normal_
    torch.manual_seed(0)
    assert all(w <= bound for w, bound in _conv_bounds(_model("agm")))
    assert any(w > bound for w, bound in _conv_bounds(_model("ogm")))


def test_pretrained_encoders_keep_their_weights():
    class Pretrained(nn.Module):  # an encoder without official_init = True
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.out_dim = 4

    from benchmark.fusion import build_fusion
    from benchmark.models import FusionModel

    encoders = nn.ModuleDict({"a": Pretrained(), "b": Pretrained()})
    model = FusionModel(encoders, build_fusion("concat", {"a": 4, "b": 4}, 3))
    before = {k: v.clone() for k, v in model.encoders.state_dict().items()}
    apply_official_init(model)
    after = model.encoders.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.count_nonzero(model.fusion.fc_out.bias) == 0
    with pytest.raises(TypeError, match="FusionModel or UnimodalModel"):
        apply_official_init(nn.Linear(2, 2))
