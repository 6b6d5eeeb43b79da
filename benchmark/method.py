"""The method contract. The trainer knows nothing of any particular method; it calls these hooks.

A method is one registered class in ``methods/``::

    @register_method
    class MyMethod(Method):
        '''One-line description shown by ``run_all.py --list``.'''
        name = "my_method"

        @dataclass
        class Config(MethodConfig):
            alpha: float = 0.5

        def training_step(self, batch, step):
            out = self.forward(batch)
            loss = F.cross_entropy(out.logits, batch["label"])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            return {"loss": loss.detach()}   # a tensor: the trainer reads it without a sync per step on CUDA

``training_step`` owns the whole update: forward passes, any number of backward passes, gradient edits and
optimiser steps. Two-pass methods (SAM), several backward passes (MMPareto), alternating modalities (MLA, MIE)
or per-stage optimisers (MIE, ReconBoost) are written inside the method without special cases in the trainer.

Hook order for one run::

    build_model -> configure_optimizers -> setup
    for each epoch: on_epoch_start, train_loader, training_step x N, on_epoch_end,
                    (trainer steps self.scheduler if not None), evaluation via predict, on_evaluation_end
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchmark.config import RunConfig, TrainConfig
from benchmark.data import Batch, DatasetInfo, make_loader, to_device
from benchmark.models import FusionModel, ModelOutput

if TYPE_CHECKING:
    from benchmark.results import ResultStore
    from benchmark.suites import RunSpec


@dataclass
class MethodConfig:
    """Base for a method's ``method.*`` hyper-parameters. ``validate`` may raise ValueError."""

    def validate(self) -> None:
        return None


@dataclass
class EpochWindowConfig(MethodConfig):
    """Base for methods that act in an inclusive epoch window (OGM-GE, AGM, PMR), numbered as in their code.

    The window ``[modulation_starts, modulation_ends]`` counts epochs the way the released training loop does:
    ``first_epoch`` is the number that loop gives its first epoch (OGM-GE and PMR: 0, ``for epoch in
    range(args.epochs)``; AGM: 1, ``range(start_epoch, EPOCHS + 1)``), so the same ``--modulation_*`` values
    select the same epochs here as there. Subclasses redeclare the two fields with their official defaults,
    set ``first_epoch`` and call ``super().validate()``.
    """

    # The released loop's number for the suite's first (0-based) epoch.
    first_epoch: ClassVar[int] = 0

    modulation_starts: int = 0
    modulation_ends: int = 0

    def validate(self) -> None:
        if self.modulation_starts > self.modulation_ends:
            raise ValueError("method.modulation_starts must not exceed method.modulation_ends")

    def in_window(self, epoch: int) -> bool:
        """Whether the suite's 0-based ``epoch`` lies in the window (counted from ``first_epoch``)."""
        return self.modulation_starts <= epoch + self.first_epoch <= self.modulation_ends


@dataclass
class MethodContext:
    """What a method may use besides its model: the run's configuration, the data and the device."""

    config: RunConfig
    info: DatasetInfo
    device: torch.device
    splits: dict[str, Dataset]
    run_dir: Path | None = None
    store: ResultStore | None = None
    # Loaders over worker processes kept across epochs on CUDA (persistent workers), by their arguments.
    _reused: dict[tuple, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def train(self) -> TrainConfig:
        return self.config.train

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.info.modalities

    @property
    def amp_enabled(self) -> bool:
        return self.config.train.amp and self.device.type == "cuda"

    def loader(
        self,
        split: str,
        *,
        shuffle: bool | None = None,
        epoch: int = 0,
        batch_size: int | None = None,
        drop_last: bool = False,
        dataset: Dataset | None = None,
    ) -> DataLoader:
        """A loader over ``split`` (or over ``dataset``, e.g. a resampled training set).

        A training loader drops a last batch of a single sample: BatchNorm cannot normalise it in train mode.
        On CUDA batches are pinned, and with ``train.num_workers > 0`` a split's loader is reused across epochs
        (persistent workers) unless it is being iterated already; the batches are the same either way.
        """
        train = split == "train"
        data = dataset if dataset is not None else self.splits[split]
        size = batch_size or (self.train.batch_size if train else self.train.eval_batch_size)
        shuffle = train if shuffle is None else shuffle
        drop_last = drop_last or (train and len(data) % size == 1)
        cuda = self.device.type == "cuda"
        reuse = cuda and self.train.num_workers > 0 and dataset is None
        key = (split, size, shuffle, drop_last)
        cached = self._reused.get(key) if reuse else None
        if cached is not None and not cached.active:
            cached.set_epoch(epoch)
            return cached
        loader = make_loader(
            data,
            size,
            shuffle=shuffle,
            seed=self.config.seed,
            epoch=epoch,
            num_workers=self.train.num_workers,
            drop_last=drop_last,
            pin_memory=cuda,
            persistent_workers=reuse and cached is None,
        )
        if reuse and cached is None:
            self._reused[key] = loader
        return loader

    def batches(self, loader: Iterable[Batch], limit: int = 0) -> Iterator[Batch]:
        """Iterate ``loader`` with batches moved to the device; ``limit`` > 0 stops after that many."""
        for i, batch in enumerate(loader):
            if limit and i >= limit:
                return
            yield to_device(batch, self.device)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; its train/eval mode is restored on exit, also on an exception."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def format_ablation(marks: dict[str, bool]) -> str:
    """``{"SAM": True, "GM": False}`` -> ``"SAM:1,GM:0"`` (the result row's ``ablation`` column)."""
    return ",".join(f"{k}:{int(bool(v))}" for k, v in marks.items())


def upcast(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 if it is half precision (bf16/fp16 under autocast); float32 and float64 pass unchanged,
    so a float64 run (the golden-step tests) keeps its precision where a plain ``.float()`` would drop it."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def with_zero_sample(x: torch.Tensor) -> torch.Tensor:
    """``x`` with one all-zero sample appended along the batch dimension: a masked-input pass and the real pass
    in one eval-mode forward (rows ``[:-1]`` and ``[-1:]``; in eval mode samples do not interact)."""
    return torch.cat([x, torch.zeros_like(x[:1])])


def build_optimizer(params: Iterable[Any], cfg: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """SGD (momentum), Adam or AdamW from ``train.*``; ``params`` may be parameter groups."""
    lr = cfg.lr if lr is None else lr
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, epochs: int | None = None):
    """Per-epoch LR schedule from ``train.scheduler``: none, step (StepLR), multistep, cosine."""
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs or cfg.epochs)
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}")


class Method:
    """Base class of every registered method; see the module docstring for the hooks."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = MethodConfig
    # What the reports show, written into every result row (see :meth:`row_facts`): the IGM paper's name for the
    # row ("" = ``name``), its position in Table 1 (rows the paper's Table 1 lacks take a fraction beside their
    # relative; None = not a Table-1 row, not run by the ``main`` suite), whether it is the proposed method (its
    # rows are tested for significance against the best baseline), and for an ablation row of the proposed
    # method the components it keeps (Table 2's check marks, e.g. {"SAM": True, "GM": False}).
    display: ClassVar[str] = ""
    paper_row: ClassVar[float | None] = None
    proposed: ClassVar[bool] = False
    ablation: ClassVar[dict[str, bool]] = {}
    # Dotted defaults applied for every dataset (e.g. {"train.lr": 1e-3}).
    train_defaults: ClassVar[dict[str, Any]] = {}
    # Dotted defaults per dataset name ("*" = every dataset), applied after train_defaults.
    dataset_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    # Overrides ``run_all.py --bench`` applies when timing steps without a result store.
    bench_overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg: Any, ctx: MethodContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.model: nn.Module = None  # type: ignore[assignment]
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.epoch = 0

    # -- run expansion ---------------------------------------------------------------------------------
    @classmethod
    def expand(cls, info: DatasetInfo) -> list[dict[str, Any]]:
        """Overrides for each run this method contributes to a suite (``unimodal``: one per modality)."""
        return [{}]

    @classmethod
    def label(cls, cfg: Any) -> str:
        """Row label in tables."""
        return cls.name

    @classmethod
    def row_facts(cls, cfg: Any) -> dict[str, Any]:
        """The row's facts for the reports: ``display``, ``paper_row``, ``proposed``, ``ablation``.

        A label other than ``name`` (a variant such as ``mie[paper]``) is shown as the label and has no
        Table-1 position or ablation marks.
        """
        label = cls.label(cfg)
        own = label == cls.name
        return {
            "display": (cls.display or cls.name) if own else label,
            "paper_row": cls.paper_row if own else None,
            "proposed": bool(cls.proposed),
            "ablation": format_ablation(cls.ablation) if own else "",
        }

    @classmethod
    def requires(cls, config: RunConfig, overrides: dict[str, Any]) -> list[RunSpec]:
        """Runs this run reads (e.g. ReconBoost's unimodal learners), as specs built like any suite run.

        ``overrides`` are the sweep's settings this run was built with (suite, then command line). The runner
        plans, locks, schedules, shows and retries these runs like any other, finishing them before this run
        starts (``config.requires`` holds them resolved); the method then only reads what they saved.
        """
        return []

    # -- construction ----------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """Default: the dataset's encoders and the ``model.fusion`` head."""
        return FusionModel.build(self.ctx.info, self.ctx.config.model)

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer | None, Any]:
        opt = build_optimizer(self.model.parameters(), self.ctx.train)
        return opt, build_scheduler(opt, self.ctx.train)

    def setup(self) -> None:
        """Called once after the model and optimiser exist (attach hooks, load checkpoints, ...)."""

    # -- training --------------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def train_loader(self, epoch: int) -> Iterable[Batch]:
        """The training batches of ``epoch`` (override to resample, e.g. SMV)."""
        return self.ctx.loader("train", epoch=epoch)

    def training_step(self, batch: Batch, step: int) -> dict[str, float | torch.Tensor]:
        """One update on ``batch``; returns numbers or 0-d tensors for logging and must include ``loss``.

        Return tensors (``loss.detach()``; a parameter's value copied with ``.detach().clone()``) rather than
        ``.item()``: on CUDA the trainer reads them every ``train.log_every`` steps, one host sync per window."""
        raise NotImplementedError

    def on_epoch_end(self, epoch: int) -> None:
        """After the epoch's last step, before the scheduler step and the evaluation."""

    # -- evaluation ------------------------------------------------------------------------------------
    def predict(self, batch: Batch) -> ModelOutput:
        """Test-time forward (the model is in eval mode, gradients off)."""
        return self.forward(batch)

    def on_evaluation_end(self, epoch: int, metrics: dict[str, dict[str, float]]) -> None:
        """``metrics[split][name]`` for val and test after each epoch's evaluation."""

    # -- state (checkpoint / resume) -------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """Method state beyond model/optimiser/scheduler (running means, prototypes, matrices...)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        return None

    def artifacts(self) -> dict[str, Any]:
        """JSON-able analysis data kept with the run (per-stage accuracies, singular values, ...)."""
        return {}

    # -- helpers ---------------------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.ctx.amp_enabled:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward(self, batch: Batch, model: nn.Module | None = None) -> ModelOutput:
        with self.autocast():
            return (model or self.model)(batch)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.ctx.info.modalities

    @property
    def device(self) -> torch.device:
        return self.ctx.device
