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


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader whose order depends only on (seed, epoch): a resumed run sees the same batches."""
    generator = torch.Generator()
    generator.manual_seed(seed * 100_003 + epoch)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        collate_fn=collate,
        generator=generator,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        persistent_workers=False,
        pin_memory=False,
    )


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
