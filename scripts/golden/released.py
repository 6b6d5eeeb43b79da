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
from collections.abc import Iterator
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
    "exact32",
    "float64",
    "import_released",
    "map_keys",
    "parse_args",
    "patched",
    "released_commit",
    "save_fixture",
    "scaled_nn",
    "seed_all",
]


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--released", required=True, help="checkout of the released repository (never committed here)")
    p.add_argument("--out", default=None, help="fixture path (default: tests/golden/<name>.npz)")
    p.add_argument("--commit", default=None, help="the released commit, where the checkout is not a git work tree")
    return p.parse_args(argv)


def released_commit(checkout: str | Path) -> str:
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


def _scale(c: int, k: int) -> int:
    # ResNet widths (64 ... 512), concatenated features (1024) and hidden sizes that are multiples of 64 shrink by
    # k; input channels (1, 2, 3) and class counts stay.
    return c // k if c % 64 == 0 else c


def scaled_nn(k: int) -> types.SimpleNamespace:
    """A stand-in for ``torch.nn`` whose Conv2d / BatchNorm2d / Linear divide multiples of 64 by ``k``.

    Patch it over a released module's ``nn`` while its model is built (``with patched(module, "nn",
    scaled_nn(8))``): the released ResNet18 then has the suite's ``model.resnet_width = 64 / k`` topology.
    The layers are subclasses of torch's, so the released ``isinstance`` checks still hold.
    """

    class Conv2d(nn.Conv2d):
        def __init__(self, in_channels: int, out_channels: int, *args: Any, **kwargs: Any) -> None:
            super().__init__(_scale(in_channels, k), _scale(out_channels, k), *args, **kwargs)

    class BatchNorm2d(nn.BatchNorm2d):
        def __init__(self, num_features: int, *args: Any, **kwargs: Any) -> None:
            super().__init__(_scale(num_features, k), *args, **kwargs)

    class Linear(nn.Linear):
        def __init__(self, in_features: int, out_features: int, *args: Any, **kwargs: Any) -> None:
            super().__init__(_scale(in_features, k), _scale(out_features, k), *args, **kwargs)

    ns = types.SimpleNamespace(**{n: getattr(nn, n) for n in dir(nn) if not n.startswith("__")})
    ns.Conv2d, ns.BatchNorm2d, ns.Linear = Conv2d, BatchNorm2d, Linear
    return ns


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
