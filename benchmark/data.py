"""The dataset contract: what a loader in ``datasets/`` provides to the trainer and the methods.

A dataset is a registered subclass of :class:`MultimodalDataset` with a typed ``Config`` (its ``data.*`` keys),
paper defaults for training (``train_defaults``), and ``split(name)`` returning a torch ``Dataset`` whose items
(or batches) are dicts: one tensor per modality, ``label`` and ``index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

Batch = dict[str, torch.Tensor]
SPLITS = ("train", "val", "test")


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are missing; the message says what to download or prepare, and where."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset that models and methods need."""

    name: str
    modalities: tuple[str, ...]
    num_classes: int
    class_names: tuple[str, ...]
    # The paper's second metric next to accuracy: "map" (audio-visual sets) or "macro_f1" (the others).
    paper_metric: str = "map"
    # modality -> backbone registered in benchmark.backbones
    default_backbones: dict[str, str] = field(default_factory=dict)
    # modality -> keyword arguments for the backbone (e.g. {"in_chans": 1})
    backbone_args: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class DatasetConfig:
    """Base for a dataset's ``data.*`` keys."""

    root: str = ""


class MultimodalDataset:
    """Base class of every registered dataset."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type] = DatasetConfig
    # Dotted ``train.*`` / ``model.*`` defaults from the papers for this dataset.
    train_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    @property
    def info(self) -> DatasetInfo:  # pragma: no cover - abstract
        raise NotImplementedError

    def split(self, name: str) -> Dataset:  # pragma: no cover - abstract
        raise NotImplementedError


class TensorSplit(Dataset):
    """An in-memory split: dict of equally long tensors. ``__getitems__`` returns a whole batch at once."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        lengths = {k: len(v) for k, v in tensors.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"tensors of unequal length: {lengths}")
        self.tensors = tensors
        self._len = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> Batch:
        return {k: v[i] for k, v in self.tensors.items()}

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {k: v.index_select(0, idx) for k, v in self.tensors.items()}


def collate(items: Any) -> Any:
    """Pass already-batched dicts through (``__getitems__``); collate lists of samples as usual."""
    if isinstance(items, dict):
        return items
    return default_collate(items)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random

    random.seed(seed)


def epoch_order(n: int, shuffle: bool, seed: int, epoch: int) -> tuple[list[int], int]:
    """The sample order of (seed, epoch) and a base seed for its batches' random draws.

    The order is the one a ``DataLoader(shuffle=True, generator=Generator().manual_seed(seed * 100_003 + epoch))``
    yields (its iterator draws one int64 base seed from the generator before the sampler's permutation), so
    every loader of the suite visits the samples in the same order whatever its number of workers.
    """
    generator = torch.Generator()
    generator.manual_seed(seed * 100_003 + epoch)
    base = int(torch.empty((), dtype=torch.int64).random_(generator=generator))
    order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
    return order, base


class SeededIndices(list):
    """One batch's indices plus the seed of its random draws (crops, flips, noise), set in the worker that
    loads it: a batch's augmentation depends on (seed, epoch, batch position), not on which worker or
    which (persistent) worker process loads it."""

    seed: int = 0


class EpochBatchSampler:
    """Batches of :func:`epoch_order` for the epoch set with :meth:`set_epoch` (a reusable loader's sampler)."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int, epoch: int = 0) -> None:
        self.n, self.batch_size, self.shuffle, self.drop_last, self.seed = n, batch_size, shuffle, drop_last, seed
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self):
        order, base = epoch_order(self.n, self.shuffle, self.seed, self.epoch)
        for b in range(len(self)):
            batch = SeededIndices(order[b * self.batch_size : (b + 1) * self.batch_size])
            batch.seed = (base + b) % 2**63
            yield batch


class BatchSeeded(Dataset):
    """Wraps a dataset for worker processes: seeds torch, numpy and random from the batch's
    :class:`SeededIndices` before loading it (``__getitems__``)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i]

    def __getitems__(self, indices: Sequence[int]) -> Any:
        seed = getattr(indices, "seed", None)
        if seed is not None:
            import random

            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
        plain = list(indices)
        getitems = getattr(self.dataset, "__getitems__", None)
        return getitems(plain) if getitems is not None else [self.dataset[i] for i in plain]


class EpochLoader(DataLoader):
    """A DataLoader over worker processes that can be reused across epochs (``set_epoch``), so that its
    workers persist (``persistent_workers``); ``active`` counts the iterations in progress."""

    def __init__(self, dataset: Dataset, sampler: EpochBatchSampler, **kwargs: Any) -> None:
        # an own generator: the iterator's base-seed draw must not consume the global RNG of the main process
        super().__init__(BatchSeeded(dataset), batch_sampler=sampler, generator=torch.Generator(), **kwargs)
        self.active = 0

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)  # type: ignore[union-attr]

    def __iter__(self):  # type: ignore[override]
        self.active += 1
        try:
            yield from super().__iter__()
        finally:
            self.active -= 1


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
    persistent_workers: bool = False,
) -> DataLoader:
    """A DataLoader whose order depends only on (seed, epoch): a resumed run sees the same batches.

    In the main process (``num_workers=0``) random transforms draw from the global generator, which the trainer
    seeds and checkpoints. With workers, each batch's draws are seeded from (seed, epoch, batch position)
    (:class:`EpochLoader`): the same whatever the number of workers, and ``persistent_workers`` (a loader
    reused across epochs through ``set_epoch``) changes nothing but the start-up cost. ``pin_memory``: page-locked
    batches for asynchronous copies to a GPU.
    """
    if num_workers > 0:
        sampler = EpochBatchSampler(len(dataset), batch_size, shuffle, drop_last, seed, epoch)  # type: ignore[arg-type]
        return EpochLoader(
            dataset,
            sampler,
            num_workers=num_workers,
            collate_fn=collate,
            worker_init_fn=_seed_worker,
            persistent_workers=persistent_workers,
            pin_memory=pin_memory,
        )
    generator = torch.Generator()
    generator.manual_seed(seed * 100_003 + epoch)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=0,
        collate_fn=collate,
        generator=generator,
        pin_memory=pin_memory,
    )


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
