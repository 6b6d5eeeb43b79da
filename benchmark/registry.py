"""Name -> entry registries for methods, datasets, backbones and suites.

In the spirit of timm's ``register_model``: a method, dataset or backbone is added by decorating one class or
function in one file of its package. The packages ``methods/``, ``datasets/`` (imported as ``mmbalance_datasets``,
see :mod:`benchmark.dataset_package`), ``benchmark/backbones/`` and ``benchmark/suites/`` import every module they
contain, so a new file is picked up without editing any list.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the valid choices."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str
    module: str


def _first_line(text: str | None) -> str:
    if not text:
        return ""
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


class Registry(Generic[T]):
    """A named collection of entries with aliases and fnmatch listing."""

    def __init__(self, kind: str, packages: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._packages = packages
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._loaded = not packages

    # -- registration ---------------------------------------------------------------------------------
    def add(self, name: str, obj: T, description: str | None = None, aliases: tuple[str, ...] = ()) -> T:
        if name in self._entries or name in self._aliases:
            existing = self._entries.get(name) or self._entries[self._aliases[name]]
            if existing.obj is obj:
                return obj
            raise ValueError(f"{self.kind} {name!r} is already registered (by {existing.module})")
        module = getattr(obj, "__module__", "") or ""
        desc = description if description is not None else _first_line(getattr(obj, "__doc__", None))
        self._entries[name] = Entry(name=name, obj=obj, description=desc, module=module)
        for alias in aliases:
            if alias in self._entries or alias in self._aliases:
                raise ValueError(f"{self.kind} alias {alias!r} is already taken")
            self._aliases[alias] = name
        return obj

    def register(self, name: Any = None, *, description: str | None = None, aliases: tuple[str, ...] = ()) -> Any:
        """Decorator, bare (``@register_method``) or called (``@register_method("x", aliases=("y",))``).

        The name defaults to the object's ``name`` attribute, else its ``__name__``.
        """
        if name is not None and not isinstance(name, str):  # bare decorator: name is the object
            return self.register()(name)

        def deco(obj: T) -> T:
            key = name or getattr(obj, "name", None) or obj.__name__  # type: ignore[attr-defined]
            return self.add(key, obj, description, aliases)

        return deco

    # -- look-up --------------------------------------------------------------------------------------
    def load(self) -> None:
        """Import every module of the registry's packages (idempotent)."""
        if self._loaded:
            return
        self._loaded = True
        for package_name in self._packages:
            import_submodules(package_name)

    def resolve(self, name: str) -> str:
        self.load()
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        choices = sorted(self._entries)
        close = difflib.get_close_matches(name, choices + sorted(self._aliases), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"unknown {self.kind} {name!r}.{hint} Registered {self.kind}s: {', '.join(choices)}")

    def get(self, name: str) -> T:
        return self._entries[self.resolve(name)].obj

    def entry(self, name: str) -> Entry[T]:
        return self._entries[self.resolve(name)]

    def names(self, pattern: str = "*") -> list[str]:
        self.load()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, target in self._aliases.items() if target == name)

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[Entry[T]]:
        self.load()
        return iter([self._entries[n] for n in sorted(self._entries)])

    def __len__(self) -> int:
        self.load()
        return len(self._entries)


def import_submodules(package_name: str) -> list[str]:
    """Import ``package_name`` and every module below it; returns the module names imported."""
    package = importlib.import_module(package_name)
    imported = []
    for info in pkgutil.walk_packages(package.__path__, prefix=package_name + "."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        importlib.import_module(info.name)
        imported.append(info.name)
    return imported


METHODS: Registry[Any] = Registry("method", ("methods",))
DATASETS: Registry[Any] = Registry("dataset", ("mmbalance_datasets",))  # the datasets/ folder (dataset_package.py)
BACKBONES: Registry[Any] = Registry("backbone", ("benchmark.backbones",))
SUITES: Registry[Any] = Registry("suite", ("benchmark.suites",))

register_method = METHODS.register
register_dataset = DATASETS.register
register_backbone = BACKBONES.register


def table1_methods() -> tuple[str, ...]:
    """The registered methods with a Table-1 position (their class's ``paper_row``), in that order."""
    rows = [(e.obj.paper_row, e.name) for e in METHODS if getattr(e.obj, "paper_row", None) is not None]
    return tuple(name for _, name in sorted(rows))


def register_suite(suite: T) -> T:
    """Register a :class:`benchmark.suites.Suite` instance under its ``name``."""
    return SUITES.add(suite.name, suite, suite.description)  # type: ignore[attr-defined]
