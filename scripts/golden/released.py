"""Helpers for the golden-fixture generators: import a released repository's code from a checkout, build its
models at a narrow width, map state dicts between its keys and the suite's, and write the fixture.

Each ``scripts/golden/<method>.py`` is run by hand (never in CI) with a checkout of the released repository::

    python scripts/golden/ogm.py --released /path/to/OGM-GE_CVPR2022

It builds the suite's model once (the initial state, under the suite's keys), copies it into the released
model, re-seeds with ``step_seed`` and runs the released training code on the stored samples in float64, and
writes ``tests/golden/<name>.npz`` (format: ``tests/golden/format.py``). The released code is never copied into
this repository: it is imported from the checkout named on the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.golden.format import GOLDEN_DIR, exact32, save_fixture  # noqa: E402
from tests.golden.harness import float64, seed_all  # noqa: E402

__all__ = [
    "GOLDEN_DIR",
    "Float64Tensor",
    "exact32",
    "float64",
    "import_released",
    "map_keys",
    "nn_with",
    "parse_args",
    "patched",
    "recorded_backward",
    "released_commit",
    "samples",
    "save_fixture",
    "scaled_nn",
    "seed_all",
    "stand_in",
    "stub_missing",
]


class Float64Tensor(torch.Tensor):
    """Released loops call ``.float()`` on their inputs; this keeps them float64 (the golden runs' dtype)."""

    def float(self, *args: Any, **kwargs: Any) -> torch.Tensor:  # noqa: A003
        return self.as_subclass(torch.Tensor).double()


def samples(n: int = 12, classes: int = 6) -> dict[str, torch.Tensor]:
    """``n`` audio-visual samples (16x16 spectrograms, two 16x16 RGB frames), labels ``arange(n) % classes``.

    Each modality carries a class-dependent offset, the visual one only in the second half, so that either
    modality leads on some batches (both OGM branches, both PMR branches occur).
    """
    g = torch.Generator().manual_seed(1234)
    label = torch.arange(n) % classes
    audio = torch.randn(n, 16, 16, generator=g).double()
    visual = torch.randn(n, 3, 2, 16, 16, generator=g).double()
    audio += 0.3 * label.view(-1, 1, 1)
    visual[n // 2 :] += 1.5 * label[n // 2 :].view(-1, 1, 1, 1, 1)
    return {"audio": exact32(audio), "visual": exact32(visual), "label": label, "index": torch.arange(n)}


def nn_with(**names: Any) -> types.SimpleNamespace:
    """A stand-in for ``torch.nn`` with some names replaced (patch it over a released module's ``nn`` to record
    what its layers see, e.g. ``nn_with(Softmax=RecordingSoftmax)``); every other name is torch's."""
    ns = types.SimpleNamespace(**{n: getattr(nn, n) for n in dir(nn) if not n.startswith("__")})
    for name, value in names.items():
        setattr(ns, name, value)
    return ns


@contextlib.contextmanager
def recorded_backward(values: list[float], before: Callable[[], None] | None = None) -> Iterator[None]:
    """Append the value of every tensor ``.backward()`` is called on (the released loss of each step); ``before``
    runs right before each backward pass (to read state such as gradient scales in force)."""
    original = torch.Tensor.backward

    def backward(self: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        values.append(float(self.detach()))
        if before is not None:
            before()
        return original(self, *args, **kwargs)

    torch.Tensor.backward = backward  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.backward = original  # type: ignore[method-assign]


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--released", required=True, help="checkout of the released repository (never committed here)")
    p.add_argument("--out", default=None, help="fixture path (default: tests/golden/<name>.npz)")
    p.add_argument(
        "--commit", default=None, help="the checkout's commit, for meta (default: `git rev-parse` in --released)"
    )
    args = p.parse_args(argv)
    args.commit = args.commit or released_commit(args.released)
    return args


def released_commit(checkout: str | Path) -> str:
    """The checkout's short HEAD, else ``"unknown"`` (``parse_args`` uses it where ``--commit`` is not given)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def import_released(checkout: str | Path, module: str, subdir: str = "") -> types.ModuleType:
    """Import ``module`` from the released checkout (``subdir`` is the folder its own imports are relative to).

    The checkout's folder goes first on ``sys.path`` so that its ``models``/``utils`` packages win; modules of the
    same names imported earlier from elsewhere are dropped first.
    """
    base = Path(checkout).resolve() / subdir
    if not base.is_dir():
        raise SystemExit(f"released checkout {base} not found")
    top = module.split(".")[0]
    for name in list(sys.modules):
        if name == top or name.startswith(top + "."):
            del sys.modules[name]
    sys.path.insert(0, str(base))
    return importlib.import_module(module)


def _scale(c: int, k: int, keep: tuple[int, ...] = ()) -> int:
    # ResNet widths (64 ... 512), concatenated features (1024) and hidden sizes that are multiples of 64 shrink by
    # k; input channels (1, 2, 3), class counts and the sizes in ``keep`` stay.
    return c // k if c % 64 == 0 and c not in keep else c


def scaled_nn(k: int, keep: tuple[int, ...] = ()) -> types.SimpleNamespace:
    """A stand-in for ``torch.nn`` whose Conv2d / BatchNorm2d / Linear divide multiples of 64 by ``k``.

    Patch it over a released module's ``nn`` while its model is built (``with patched(module, "nn",
    scaled_nn(8))``): the released ResNet18 then has the suite's ``model.resnet_width = 64 / k`` topology.
    The layers are subclasses of torch's, so the released ``isinstance`` checks still hold. Sizes in ``keep``
    are left alone (a hidden layer the suite does not scale with the width, e.g. ReconBoost's 256).
    """

    class Conv2d(nn.Conv2d):
        def __init__(self, in_channels: int, out_channels: int, *args: Any, **kwargs: Any) -> None:
            super().__init__(_scale(in_channels, k, keep), _scale(out_channels, k, keep), *args, **kwargs)

    class BatchNorm2d(nn.BatchNorm2d):
        def __init__(self, num_features: int, *args: Any, **kwargs: Any) -> None:
            super().__init__(_scale(num_features, k, keep), *args, **kwargs)

    class Linear(nn.Linear):
        def __init__(self, in_features: int, out_features: int, *args: Any, **kwargs: Any) -> None:
            super().__init__(_scale(in_features, k, keep), _scale(out_features, k, keep), *args, **kwargs)

    ns = types.SimpleNamespace(**{n: getattr(nn, n) for n in dir(nn) if not n.startswith("__")})
    ns.Conv2d, ns.BatchNorm2d, ns.Linear = Conv2d, BatchNorm2d, Linear
    return ns


class _Stub(types.ModuleType):
    """A module that is not installed and that the released code only imports: every attribute is a dummy."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__init__": lambda self, *a, **k: None})


class _StandIn(types.ModuleType):
    def __init__(self, base: types.ModuleType, overrides: dict[str, Any]) -> None:
        super().__init__(base.__name__)
        self._base = base
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


def stand_in(module: types.ModuleType, **overrides: Any) -> types.ModuleType:
    """``module`` with some attributes replaced, to patch over a released module's global of that name (``with
    patched(train, "torch", stand_in(torch, float32=torch.float64))``); every other attribute is the module's."""
    return _StandIn(module, overrides)


def stub_missing(*names: str) -> list[str]:
    """Install a :class:`_Stub` in ``sys.modules`` for each of ``names`` that cannot be imported (third-party
    packages the released module imports at top level but the golden run never uses); returns the stubbed ones."""
    stubbed = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = _Stub(name)
            stubbed.append(name)
    return stubbed


@contextlib.contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def map_keys(state: dict[str, torch.Tensor], prefixes: dict[str, str]) -> dict[str, torch.Tensor]:
    """Rename the keys of ``state`` by prefix (``{"encoders.audio.trunk.": "audio_net.", ...}``); a key that no
    prefix matches is an error, so that nothing is silently left out of a comparison."""
    out = {}
    for key, value in state.items():
        for src, dst in prefixes.items():
            if key.startswith(src):
                out[dst + key[len(src) :]] = value
                break
        else:
            raise KeyError(f"no prefix mapping for state key {key!r}")
    return out
