"""Run a suite method from a golden fixture's initial state on its samples, in float64, and compare.

The suite side of every golden-step test:

* the fixture's samples become the registered dataset ``golden_av`` (``data.fixture`` names the file; train,
  val and test are the same samples, in the stored order, unless the fixture has a ``data_val`` or
  ``data_test`` group for that split); by default audio-visual with the ResNet18 backbones, or the modalities
  ``meta["modalities"]`` with pre-extracted feature vectors (``meta["feature_dims"]``, the identity encoder
  ``golden_features``) for released code that starts from features;
* :func:`run_from_fixture` builds the run through the real trainer (``fit``) with the model in float64 and the
  fixture's initial parameters and buffers loaded strictly; every loader is unshuffled, so the batches are the
  fixture's samples in order, as the generator fed them to the released code; the RNGs are re-seeded with
  ``meta["step_seed"]`` right before training, as the generator does before its first step;
* :func:`assert_close` compares state dicts (or any dict of tensors) and reports the largest relative
  difference, so a failure names the tensors that drifted.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmark.config import build_config
from benchmark.data import DatasetConfig, DatasetInfo, MultimodalDataset, TensorSplit
from benchmark.method import Method, MethodContext
from benchmark.registry import BACKBONES, DATASETS, register_backbone, register_dataset
from tests.golden.format import GOLDEN_DIR, Fixture, exact32, load_fixture

RTOL = 1e-6  # relative tolerance of a golden comparison (float64 on both sides)


@dataclass
class GoldenConfig(DatasetConfig):
    fixture: str = ""  # name of the npz under tests/golden/ (without .npz)


class FeatureVectors(torch.nn.Module):
    """Encoder of pre-extracted feature vectors: (B, dim) -> (B, dim), unchanged (no parameters)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def golden_features(model_cfg: Any, dim: int = 1, **_: object) -> torch.nn.Module:
    """Identity encoder for a golden fixture's pre-extracted feature vectors (``meta["feature_dims"]``)."""
    return FeatureVectors(dim)


class GoldenAV(MultimodalDataset):
    """The samples of a golden fixture as a dataset: audio-visual with ResNet18 backbones (classes from the
    meta), or ``meta["modalities"]`` given as feature vectors of ``meta["feature_dims"]``."""

    name = "golden_av"
    Config = GoldenConfig

    def _fixture(self) -> Fixture:
        ref = self.cfg.fixture
        return Fixture(ref) if ref.endswith(".npz") else load_fixture(ref)

    @property
    def info(self) -> DatasetInfo:
        meta = self._fixture().meta if self.cfg.fixture else {}
        n = int(meta.get("num_classes", 2))
        dims: dict[str, int] = meta.get("feature_dims", {})
        modalities = tuple(meta.get("modalities", ("audio", "visual")))
        if dims:
            backbones = {m: "golden_features" for m in modalities}
            args: dict[str, dict[str, Any]] = {m: {"dim": int(dims[m])} for m in modalities}
        else:
            backbones = {"audio": "resnet18_audio", "visual": "resnet18_visual"}
            args = {"audio": {"in_chans": 1}, "visual": {"in_chans": 3}}
        return DatasetInfo(
            name=self.name,
            modalities=modalities,
            num_classes=n,
            class_names=tuple(str(i) for i in range(n)),
            default_backbones=backbones,
            backbone_args=args,
        )

    def split(self, name: str) -> TensorSplit:
        fx = self._fixture()
        data = fx.group(f"data_{name}") if f"data_{name}" in fx.groups() else fx.group("data")
        return TensorSplit({k: v for k, v in data.items()})


if "golden_features" not in BACKBONES.names():
    register_backbone("golden_features")(golden_features)
if "golden_av" not in DATASETS.names():
    register_dataset(GoldenAV)


@contextlib.contextmanager
def float64() -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread: a golden run's tensors are tiny, so thread start-up costs more than it saves (and
    on a busy machine a two-thread BatchNorm of a few hundred numbers waits ~100x longer than one thread)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def seed_all(seed: int) -> None:
    """The generators call the same before the released code's first step."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _unshuffled(ctx: MethodContext) -> Callable[..., Any]:
    def loader(split: str, **kw: Any):
        kw["shuffle"] = False
        return MethodContext.loader(ctx, split, **kw)

    return loader


@dataclass
class GoldenRun:
    method: Method
    row: dict[str, Any]
    steps: list[dict[str, float]]  # what training_step returned, per step

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.method.model.state_dict().items()}


def run_from_fixture(
    method: str,
    fixture: str | Fixture,
    overrides: dict[str, Any] | None = None,
    prepare: Callable[[Method], None] | None = None,
) -> GoldenRun:
    """Train ``method`` on the fixture's samples from its ``init/`` state with the fixture's suite overrides
    (``meta["suite_overrides"]``) plus ``overrides``; ``prepare`` runs after the weights are loaded."""
    fx = fixture if isinstance(fixture, Fixture) else load_fixture(fixture)
    name = fx.path.stem
    over = {
        "train.checkpoint": False,
        "train.device": "cpu",
        "train.eval_batch_size": max(len(fx[f"{g}/label"]) for g in fx.groups() if g.startswith("data")),
        **fx.meta.get("suite_overrides", {}),
        **(overrides or {}),
        "data.fixture": name if fx.path.parent == GOLDEN_DIR else str(fx.path),  # a fixture elsewhere: its path
    }
    config = build_config(method, "golden_av", int(fx.meta.get("seed", 0)), over)
    init = fx.group("init")
    steps: list[dict[str, float]] = []
    holder: dict[str, Method] = {}

    def on_model(m: Method) -> None:
        m.model.double()
        missing, unexpected = m.model.load_state_dict(init, strict=False)
        if missing or unexpected:
            raise AssertionError(f"{fx.path}: state keys differ; missing {missing[:5]}, unexpected {unexpected[:5]}")
        m.ctx.loader = _unshuffled(m.ctx)  # type: ignore[method-assign]
        step = m.training_step

        def recorded(batch, i):
            if not steps:  # right before the first step, as the generator re-seeds the released code
                seed_all(int(fx.meta.get("step_seed", 0)))
            out = step(batch, i)
            steps.append({k: float(v) for k, v in out.items()})
            return out

        m.training_step = recorded  # type: ignore[method-assign]
        if prepare is not None:
            prepare(m)
        holder["method"] = m

    from benchmark.trainer import fit

    with float64(), one_thread():
        row = fit(config, None, progress=False, on_model=on_model)
    return GoldenRun(holder["method"], row, steps)


def suite_initial_state(
    method: str, data: dict[str, torch.Tensor], meta: dict[str, Any], overrides: dict[str, Any], tmp_dir: str
) -> tuple[Method, dict[str, torch.Tensor]]:
    """For the generators: the suite's method built on ``data`` with ``overrides`` (seeded by ``meta["seed"]``),
    and its initial state under the suite's keys, rounded to float32 (what ``init/`` stores exactly)."""
    from benchmark.trainer import build_run
    from tests.golden.format import save_fixture

    path = save_fixture(f"{tmp_dir}/data_only.npz", meta, {"data": data})
    config = build_config(method, "golden_av", int(meta.get("seed", 0)), {**overrides, "data.fixture": str(path)})
    with float64():
        setup = build_run(config, None, on_model=lambda m: m.model.double())
    return setup.method, {k: exact32(v) for k, v in setup.method.model.state_dict().items()}


def max_rel_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max |a - e| / max(|e|_max, tiny)`` over the tensor: the relative size of the largest difference."""
    a, e = actual.detach().double(), expected.detach().double()
    if a.shape != e.shape:
        return float("inf")
    if a.numel() == 0:
        return 0.0
    scale = max(float(e.abs().max()), 1e-30)
    return float((a - e).abs().max()) / scale


def assert_close(
    actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], rtol: float = RTOL, what: str = "state"
) -> float:
    """Every key of ``expected`` present in ``actual`` within ``rtol`` (relative to each tensor's largest
    magnitude); returns the largest relative difference."""
    missing = sorted(set(expected) - set(actual))
    assert not missing, f"{what}: missing {missing[:8]}"
    diffs = {k: max_rel_diff(actual[k], v) for k, v in expected.items()}
    worst = sorted(diffs.items(), key=lambda kv: -kv[1])
    assert worst[0][1] <= rtol, f"{what}: largest relative differences {worst[:5]} exceed {rtol}"
    return worst[0][1] if worst else 0.0


__all__ = [
    "GOLDEN_DIR",
    "RTOL",
    "GoldenRun",
    "assert_close",
    "float64",
    "max_rel_diff",
    "one_thread",
    "run_from_fixture",
    "seed_all",
    "suite_initial_state",
]
