"""SMV: sample-level modality valuation and re-sampling (Wei et al., CVPR 2024, "Enhancing Multimodal
Cooperation via Sample-level Modality Valuation"; ``GeWu-Lab/Valuate-and-Enhance-Multimodal-Cooperation``
``code/sample_level.py``, ``code/modality_level.py``; ``baselines.md`` section 8.1).

What it does, the official defaults, every difference from the released code and the paper, and the tests:
`docs/methods/smv.md`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from benchmark.data import Batch
from benchmark.method import Method, MethodConfig, eval_mode, upcast
from benchmark.models import FusionModel
from benchmark.registry import register_method


def shapley_values(
    correct: dict[frozenset[str], torch.Tensor], modalities: tuple[str, ...], full_value: float = 2.0
) -> dict[str, torch.Tensor]:
    """Per-sample Shapley value of each modality from ``correct[S]`` (0/1 per sample) for every non-empty ``S``.

    ``v(S) = correct[S]``, ``v(all) = full_value * correct[all]`` and ``v(empty) = 0``.
    """
    n = len(modalities)
    full = frozenset(modalities)

    def v(s: frozenset[str]) -> torch.Tensor | float:
        if not s:
            return 0.0
        value = correct[s].float()
        return full_value * value if s == full else value

    out = {}
    for m in modalities:
        others = [o for o in modalities if o != m]
        total: torch.Tensor | float = 0.0
        for k in range(len(others) + 1):
            weight = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
            for subset in itertools.combinations(others, k):
                s = frozenset(subset)
                total = total + weight * (v(s | {m}) - v(s))
        out[m] = torch.as_tensor(total)
    return out


def copies_for(phi: torch.Tensor, thresholds: tuple[float, float, float] = (1.0, 0.4, -0.1)) -> torch.Tensor:
    """Extra copies per sample: 0 if ``phi >= t0``, 1 if ``t1 < phi < t0``, 2 if ``t2 < phi <= t1``, else 3."""
    t0, t1, t2 = thresholds
    copies = torch.full_like(phi, 3, dtype=torch.long)
    copies[phi > t2] = 2
    copies[phi > t1] = 1
    copies[phi >= t0] = 0
    return copies


class ResampledSplit(Dataset):
    """``base`` items at ``indices`` with a ``solo`` entry: -1 = all modalities, k = keep only modality k."""

    def __init__(self, base: Dataset, indices: torch.Tensor, solo: torch.Tensor) -> None:
        if len(indices) != len(solo):
            raise ValueError("indices and solo must have the same length")
        self.base = base
        self.indices = indices.long()
        self.solo = solo.long()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Batch:
        item = dict(self.base[int(self.indices[i])])
        item["solo"] = self.solo[i]
        return item

    def __getitems__(self, idx: list[int]) -> Batch:
        pos = torch.as_tensor(idx, dtype=torch.long)
        rows = self.indices[pos].tolist()
        getitems = getattr(self.base, "__getitems__", None)
        if getitems is not None:
            batch = dict(getitems(rows))
        else:
            from torch.utils.data._utils.collate import default_collate

            batch = default_collate([self.base[r] for r in rows])
        batch["solo"] = self.solo[pos]
        return batch


@register_method
class Smv(Method):
    """SMV: per-sample Shapley valuation of each modality; re-sample copies that train the low-value modality."""

    name = "smv"
    display = "SMV"
    paper_row = 10
    dataset_defaults = {
        # Chosen on validation by the mini_tune grid (benchmark/suites/mini.py, scripts/select_mini.py):
        # train.lr in (0.003, 0.01, 0.03) x train.weight_decay in (0.0001, 0.001).
        "av_digits": {"train.lr": 0.01, "train.weight_decay": 0.001},
        # Released KS setting: Adam 5e-5 (wd 1e-4), StepLR(30, 0.1), 60 epochs, batch 64.
        "kinetics_sounds": {
            "train.optimizer": "adam",
            "train.lr": 5e-5,
            "train.weight_decay": 1e-4,
            "train.scheduler": "step",
            "train.step_size": 30,
            "train.gamma": 0.1,
            "train.epochs": 60,
            "train.batch_size": 64,
        },
    }

    @dataclass
    class Config(MethodConfig):
        # sample: per-sample copies (sample_level.py); modality: dataset-level duplication (modality_level.py).
        level: Literal["sample", "modality"] = "sample"
        # Epochs on the original set before the first re-sampled one (released --warmup; 0-based epoch
        # `warmup` is the first to train on a re-sampled set).
        warmup: int = 5
        # v(all modalities) counts this many times (official: 2 * 1[correct]).
        full_value: float = 2.0
        # phi bins for 0 / 1 / 2 / 3 extra copies (sample level).
        thresholds: tuple[float, float, float] = (1.0, 0.4, -0.1)
        # Modality level: fraction of samples valuated, and the scale of the duplicated fraction.
        part_ratio: float = 0.2
        alpha: float = 1.0

        def validate(self) -> None:
            if self.warmup < 1:
                raise ValueError(f"method.warmup must be >= 1, got {self.warmup}")
            if not 0.0 < self.part_ratio <= 1.0:
                raise ValueError(f"method.part_ratio must be in (0, 1], got {self.part_ratio}")
            t0, t1, t2 = self.thresholds
            if not t0 > t1 > t2:
                raise ValueError(f"method.thresholds must be decreasing, got {self.thresholds}")

    @classmethod
    def label(cls, cfg: Any) -> str:
        return "smv" if cfg.level == "sample" else "smv_modality"

    def setup(self) -> None:
        if not isinstance(self.model, FusionModel):
            raise TypeError("SMV needs the FusionModel (encoders + fusion head) to zero modality features")
        self.history: list[dict[str, Any]] = []

    # -- valuation -------------------------------------------------------------------------------------
    @torch.no_grad()
    def valuate(self, dataset: Dataset) -> dict[str, torch.Tensor]:
        """Per-sample Shapley value of each modality over ``dataset`` (model in eval mode, order kept)."""
        model = self.model
        subsets = [
            frozenset(c) for k in range(1, len(self.modalities) + 1) for c in itertools.combinations(self.modalities, k)
        ]
        correct: dict[frozenset[str], list[torch.Tensor]] = {s: [] for s in subsets}
        with eval_mode(model):
            for batch in self.ctx.batches(
                self.ctx.loader("train", shuffle=False, dataset=dataset, batch_size=self.ctx.train.eval_batch_size)
            ):
                with self.autocast():
                    feats = model.encode(batch)
                    for s in subsets:
                        masked = {m: (f if m in s else torch.zeros_like(f)) for m, f in feats.items()}
                        pred = model.fusion(masked).argmax(1)
                        correct[s].append((pred == batch["label"]).cpu())
        joined = {s: torch.cat(v) for s, v in correct.items()}
        return shapley_values(joined, self.modalities, self.cfg.full_value)

    def resample(self, epoch: int) -> ResampledSplit:
        """The training set of ``epoch``: every sample once plus the copies chosen by the valuation."""
        base = self.ctx.splits["train"]
        n = len(base)
        gen = torch.Generator().manual_seed(self.ctx.config.seed * 100_003 + epoch)
        extra_idx, extra_solo = [], []
        record: dict[str, Any] = {"epoch": epoch + 1}
        if self.cfg.level == "sample":
            phi = self.valuate(base)
            m_count = len(self.modalities)
            copies = torch.stack([copies_for(phi[m], tuple(self.cfg.thresholds)) for m in self.modalities], 1)
            # sample by sample, each sample's copies in modality order (the released dataset's order)
            extra_idx.append(torch.arange(n).repeat_interleave(m_count).repeat_interleave(copies.reshape(-1)))
            extra_solo.append(torch.arange(m_count).repeat(n).repeat_interleave(copies.reshape(-1)))
            for k, m in enumerate(self.modalities):
                record[f"phi_{m}"] = float(phi[m].mean())
                record[f"copies_{m}"] = int(copies[:, k].sum())
        else:
            part = torch.randperm(n, generator=gen)[: max(1, int(n * self.cfg.part_ratio))]
            phi = self.valuate(ResampledSplit(base, part, torch.full_like(part, -1)))
            means = {m: float(phi[m].mean()) for m in self.modalities}
            gaps = {m: 1.0 - means[m] for m in self.modalities}
            weakest = max(self.modalities, key=lambda m: gaps[m])
            d = (max(gaps.values()) - min(gaps.values())) * 2.0 / 3.0 * self.cfg.alpha
            count = int(d * n)
            idx = torch.randint(0, n, (count,), generator=gen)
            extra_idx.append(idx)
            extra_solo.append(torch.full_like(idx, self.modalities.index(weakest)))
            record.update({f"phi_{m}": means[m] for m in self.modalities})
            record.update({"kept": weakest, f"copies_{weakest}": count})
        indices = torch.cat([torch.arange(n), *extra_idx])
        solo = torch.cat([torch.full((n,), -1, dtype=torch.long), *extra_solo])
        record["size"] = len(indices)
        self.history.append(record)
        return ResampledSplit(base, indices, solo)

    def train_loader(self, epoch: int):
        """The original set for the first ``warmup`` epochs, then a set re-sampled from the current model."""
        if epoch < self.cfg.warmup:
            return self.ctx.loader("train", epoch=epoch)
        return self.ctx.loader("train", epoch=epoch, dataset=self.resample(epoch))

    # -- training --------------------------------------------------------------------------------------
    def training_step(self, batch: Batch, step: int) -> dict[str, float]:
        with self.autocast():
            feats = self.model.encode(batch)
            solo = batch.get("solo")
            if solo is not None:
                for k, m in enumerate(self.modalities):
                    drop = (solo >= 0) & (solo != k)
                    feats[m] = feats[m] * (~drop).to(feats[m].dtype).unsqueeze(1)
            out = self.model.head(feats)
        loss = F.cross_entropy(upcast(out.logits), batch["label"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach()}

    # -- state -----------------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])

    def artifacts(self) -> dict[str, Any]:
        """Per re-sampled epoch: mean Shapley value and number of copies per modality, training-set size."""
        return {"resampling": self.history}
