"""The suite's ``datasets/`` folder, imported as the package ``mmbalance_datasets``.

The folder keeps its name (the layout shows the architecture), but Hugging Face's ``datasets`` is very often
installed beside the suite, so the suite never imports it as ``datasets``: ``import datasets`` stays Hugging Face's
everywhere (the folder has no ``__init__.py``, so an installed regular package wins over it even inside the
repository), and the suite's code imports ``mmbalance_datasets.<module>``. Importing :mod:`benchmark` installs the
finder that maps that name to the folder.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path

PACKAGE = "mmbalance_datasets"
FOLDER = Path(__file__).resolve().parents[1] / "datasets"


class _Finder(importlib.abc.MetaPathFinder):
    """Finds ``mmbalance_datasets`` (a namespace package over ``FOLDER``); its modules are found on its path."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != PACKAGE:
            return None
        if not FOLDER.is_dir():
            raise ImportError(f"the suite's datasets folder {FOLDER} is missing; reinstall with `pip install -e .`")
        spec = ModuleSpec(PACKAGE, None, is_package=True)
        spec.submodule_search_locations = [str(FOLDER)]
        return spec


def install() -> None:
    """Make ``import mmbalance_datasets`` find the suite's ``datasets/`` folder (idempotent)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
