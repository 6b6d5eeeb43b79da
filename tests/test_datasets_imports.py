"""The suite's ``datasets/`` folder and Hugging Face ``datasets`` live side by side (#15).

The suite imports its folder as ``mmbalance_datasets`` (:mod:`benchmark.dataset_package`); ``import datasets`` is
left to whatever is installed. A stand-in for Hugging Face ``datasets`` is built in a scratch folder: a regular
package whose ``io/spark.py`` raises on import as Hugging Face's does without pyspark, which is what crashed the
registry when it walked the wrong ``datasets``. A real Hugging Face install is used as well when
``MMB_HF_DATASETS`` names a folder holding one (e.g. ``pip install --target DIR datasets`` and its dependencies).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
import datasets as hf_first
from benchmark.registry import BACKBONES, DATASETS
names = DATASETS.names()
module = DATASETS.entry("crema_d").module
import datasets
from transformers import BertModel  # noqa: F401  (the libraries we use import beside both)
import mmbalance_datasets.crema_d as ours
print(json.dumps({
    "hf_file": datasets.__file__,
    "same": datasets is hf_first,
    "registered": names,
    "module": module,
    "ours_file": ours.__file__,
    "backbones": "bert_tiny" in BACKBONES.names(),
}))
"""


def _fake_hf(root: Path) -> Path:
    pkg = root / "datasets"
    (pkg / "io").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Stand-in for Hugging Face datasets."""\n__version__ = "0.0-fake"\n')
    (pkg / "io" / "__init__.py").write_text("")
    (pkg / "io" / "spark.py").write_text("raise ImportError(\"No module named 'pyspark'\")\n")
    return root


def _run(cwd: Path, path: list[Path]) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in path)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _check(info: dict, hf_root: Path) -> None:
    assert Path(info["hf_file"]).resolve() == (hf_root / "datasets" / "__init__.py").resolve()
    assert info["same"]
    assert {"av_digits", "crema_d", "kinetics_sounds", "nvgesture", "sarcasm", "twitter2015"} <= set(info["registered"])
    assert info["module"] == "mmbalance_datasets.crema_d"
    assert Path(info["ours_file"]).resolve() == ROOT / "datasets" / "crema_d.py"
    assert info["backbones"]


SLOW = pytest.mark.slow  # each case starts a Python with torch and transformers; one case runs in `make test`


@pytest.mark.parametrize(
    "where, order",
    [("outside", "hf_first"), pytest.param("outside", "suite_first", marks=SLOW)]
    + [pytest.param("inside", o, marks=SLOW) for o in ("hf_first", "suite_first")],
)
def test_fake_hf_datasets_beside_the_suite(tmp_path: Path, where: str, order: str) -> None:
    hf = _fake_hf(tmp_path / "hf")
    path = [hf, ROOT] if order == "hf_first" else [ROOT, hf]
    cwd = ROOT if where == "inside" else tmp_path
    _check(_run(cwd, path), hf)


@pytest.mark.slow
def test_real_hf_datasets_beside_the_suite(tmp_path: Path) -> None:
    target = os.environ.get("MMB_HF_DATASETS")
    if not target:
        pytest.skip("MMB_HF_DATASETS is not set: no real Hugging Face install to try (the stand-in test ran)")
    hf = Path(target)
    for cwd in (ROOT, tmp_path):
        _check(_run(cwd, [hf, ROOT]), hf)


def test_without_hf_datasets_import_datasets_is_not_the_suite_registry(tmp_path: Path) -> None:
    """Nothing of the suite needs ``import datasets``: the registry works when the name resolves to nothing of
    ours (here a scratch package shadows it), and the folder has no __init__.py claiming the name."""
    assert not (ROOT / "datasets" / "__init__.py").exists()
    from benchmark.registry import DATASETS

    builtin = ("av_digits", "crema_d", "kinetics_sounds", "nvgesture", "sarcasm", "twitter2015")
    assert [DATASETS.entry(n).module for n in builtin] == [f"mmbalance_datasets.{n}" for n in builtin]


def test_no_code_of_the_suite_imports_the_name_datasets() -> None:
    """``datasets.x`` would be a second copy of a module (or Hugging Face's): only ``mmbalance_datasets`` is ours."""
    import re

    pattern = re.compile(r"^\s*(from datasets[\s.]|import datasets\b)", re.M)
    here = Path(__file__).resolve()
    offenders = [
        str(p.relative_to(ROOT))
        for top in ("benchmark", "methods", "datasets", "tests", "scripts")
        for p in (ROOT / top).rglob("*.py")
        if p != here and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == [] and not pattern.search((ROOT / "run_all.py").read_text(encoding="utf-8"))
