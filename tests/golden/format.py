"""The golden-fixture file format, shared by the generators (``scripts/golden/``) and the tests.

A fixture is one compressed ``.npz`` file: named float32/int64 arrays grouped by a prefix, plus ``meta``, a JSON
document (the released repository and commit, the command that made the file, the hyper-parameters, the
suite's ``--set`` overrides that reproduce them, and any number of notes).

Groups (``fixture.group("init")``, or ``fixture["init/<name>"]``): ``init/`` the initial parameters and buffers
under the suite's state-dict keys, ``data/`` the samples (one array per batch field: ``audio``, ``visual``,
``label``, ``index``), ``final/`` the parameters and buffers after the released code's steps (suite keys),
``trace/`` per-step values of the released code (losses, coefficients, Pareto weights, T matrices, ...). A method
may add groups of its own.

Floating-point arrays are stored in float32 to keep the files small; both sides compute in float64. uint8 arrays
(images, in the dataset fixtures ``data_*.npz``) are stored as uint8 and loaded as uint8 tensors; every other
integer array as int64. The
generators round the initial state and the samples to float32 *before* running the released code
(:func:`exact32`), so those groups are exact; the results (``final/``, ``trace/``) carry float32 rounding,
a relative error of about 6e-8, far inside the tests' tolerance (1e-6).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

GOLDEN_DIR = Path(__file__).resolve().parent
KINDS = {"f32": np.float32, "i64": np.int64, "u8": np.uint8}


def exact32(t: torch.Tensor) -> torch.Tensor:
    """``t`` rounded to float32 and returned in float64: a value the fixture stores exactly."""
    return t.detach().float().double() if t.is_floating_point() else t.detach().clone()


def _array(value: Any) -> np.ndarray:
    if torch.is_tensor(value):
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        return value.numpy()
    array = np.asarray(value)
    return array.astype(np.float32) if array.dtype.kind == "f" else array


def save_fixture(path: str | Path, meta: dict[str, Any], groups: dict[str, dict[str, Any]]) -> Path:
    """Write ``groups`` (group -> name -> tensor/array/number) and ``meta`` to ``path`` (compressed npz).

    Each group is packed into one float32 and one int64 vector (per-entry npz members would cost a few hundred
    bytes each); ``index`` records every entry's name, dtype and shape in order.
    """
    index: dict[str, list[list[Any]]] = {}
    arrays: dict[str, np.ndarray] = {}
    for group, items in groups.items():
        packed: dict[str, list[np.ndarray]] = {"f32": [], "i64": [], "u8": []}
        entries = index.setdefault(group, [])
        for name, value in items.items():
            array = _array(value)
            kind = "f32" if array.dtype.kind == "f" else "u8" if array.dtype == np.uint8 else "i64"
            packed[kind].append(array.astype(KINDS[kind]).reshape(-1))
            entries.append([name, kind, list(array.shape)])
        for kind, parts in packed.items():
            if parts:
                arrays[f"{group}.{kind}"] = np.concatenate(parts)
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True, indent=1))
    arrays["index"] = np.array(json.dumps(index))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


class Fixture:
    """A loaded fixture: ``meta`` and ``group(name)`` -> {key: tensor} (float64 / int64 tensors)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"golden fixture {self.path} is missing; regenerate it with the script named in tests/golden/README.md"
            )
        self._groups: dict[str, dict[str, torch.Tensor]] = {}
        with np.load(self.path, allow_pickle=False) as npz:
            self.meta: dict[str, Any] = json.loads(str(npz["meta"]))
            index = json.loads(str(npz["index"]))
            for group, entries in index.items():
                offsets = dict.fromkeys(KINDS, 0)
                packed: dict[str, np.ndarray] = {}  # each member decompressed once, not once per entry
                out: dict[str, torch.Tensor] = {}
                for name, kind, shape in entries:
                    n = int(np.prod(shape)) if shape else 1
                    if kind not in packed:
                        packed[kind] = npz[f"{group}.{kind}"]
                    flat = packed[kind][offsets[kind] : offsets[kind] + n]
                    offsets[kind] += n
                    t = torch.from_numpy(flat.reshape(shape).copy())
                    out[name] = t.double() if kind == "f32" else t
                self._groups[group] = out

    def group(self, name: str) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self._groups.get(name, {}).items()}

    def groups(self) -> list[str]:
        return sorted(self._groups)

    def __getitem__(self, key: str) -> torch.Tensor:
        group, name = key.split("/", 1)
        return self._groups[group][name].clone()


def load_fixture(name: str) -> Fixture:
    """``tests/golden/<name>.npz``."""
    return Fixture(GOLDEN_DIR / f"{name}.npz")
