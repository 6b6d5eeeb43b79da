"""Entropy-weighted fusion of per-modality logits: MLA's test-time fusion (``--dynamic``), which MIE/IGM reuse
("the same weighting strategy as MLA"). One implementation for both methods."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from benchmark.method import upcast


def entropy_fusion_weights(logits_list: Sequence[torch.Tensor], per_sample: bool = False) -> torch.Tensor:
    """MLA's entropy gating weights ``w_m = exp(max_j H_j - H_m) / sum_j exp(max_j H_j - H_j)``.

    ``per_sample=False`` (official ``calculate_gating_weights``): ``p = softmax(logits_m, dim=0)`` over the batch
    and ``H_m = -sum p log p`` over the whole B x C matrix; returns shape (M,).
    ``per_sample=True`` (paper): ``p = softmax(logits_m, dim=1)`` per sample; returns shape (M, B).
    """
    dim = 1 if per_sample else 0
    ents = []
    for lg in logits_list:
        logp = F.log_softmax(upcast(lg), dim=dim)
        h = -(logp.exp() * logp)
        ents.append(h.sum(dim=1) if per_sample else h.sum())
    h_all = torch.stack(ents)  # (M,) or (M, B)
    return torch.softmax(-h_all, dim=0)


def fuse_logits(logits_list: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``sum_m w_m * logits_m`` with weights of shape (M,) or (M, B)."""
    out = torch.zeros_like(logits_list[0], dtype=torch.float32)
    for lg, w in zip(logits_list, weights):
        out = out + (w.reshape(-1, 1) if w.dim() else w) * upcast(lg)
    return out
