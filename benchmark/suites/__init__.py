"""Declarative suites: which methods, datasets, seeds and overrides make up one paper artefact.

A suite is one :class:`Suite` instance registered with ``register_suite`` in one file of this package::

    register_suite(Suite(name="my_sweep", description="...", methods=("joint", "mie"),
                         datasets=("av_digits",), seeds=(0, 1, 2),
                         grid=({"method.tau": 0.4}, {"method.tau": 1.3})))

``methods=None`` means every registered method. Each method contributes the runs of its ``expand`` (the
``unimodal`` method one per modality); ``grid`` multiplies every run by a list of override dicts
(``method_grids[name]`` replaces it for one method: per-method tuning grids), and ``method_overrides[name]``
adds overrides to one method's runs only; ``exclude`` drops (method, dataset) pairs (``"*"`` matches any),
e.g. two-modality methods on a three-modality dataset. ``report_note`` heads the suite's report and the
captions of its summary and Table 1 (e.g. that a smoke test does not rank methods).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunSpec:
    method: str
    dataset: str
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Suite:
    name: str
    description: str
    datasets: tuple[str, ...]
    # Method names, None = every registered method, or a callable giving the names (evaluated when the runs are
    # built, so that loading the suites imports no method), e.g. :func:`benchmark.registry.table1_methods`.
    methods: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None
    seeds: tuple[int, ...] = (0,)
    overrides: dict[str, Any] = field(default_factory=dict)
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    grid: tuple[dict[str, Any], ...] = ({},)
    method_grids: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    exclude: tuple[tuple[str, str], ...] = ()
    report_note: str = ""

    def excluded(self, method: str, dataset: str) -> bool:
        return any(m in ("*", method) and d in ("*", dataset) for m, d in self.exclude)

    def specs(
        self,
        methods: list[str] | None = None,
        datasets: list[str] | None = None,
        seeds: list[int] | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> list[RunSpec]:
        """The runs of this suite, optionally narrowed (methods/datasets/seeds) and with extra overrides."""
        from benchmark.registry import DATASETS, METHODS

        own = self.methods() if callable(self.methods) else self.methods
        method_names = [METHODS.resolve(m) for m in (methods or own or METHODS.names())]
        dataset_names = [DATASETS.resolve(d) for d in (datasets or self.datasets)]
        out: list[RunSpec] = []
        for dataset in dataset_names:
            dataset_cls = DATASETS.get(dataset)
            info = dataset_cls(dataset_cls.Config()).info
            for method in method_names:
                if self.excluded(method, dataset):
                    continue
                for variant in METHODS.get(method).expand(info):
                    for point in self.method_grids.get(method, self.grid):
                        for seed in seeds or self.seeds:
                            merged = {
                                **self.overrides,
                                **self.dataset_overrides.get(dataset, {}),
                                **self.method_overrides.get(method, {}),
                                **variant,
                                **point,
                                **(overrides or {}),
                            }
                            out.append(RunSpec(method, dataset, int(seed), merged))
        return out
