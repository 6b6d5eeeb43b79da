"""Classification metrics, computed with scikit-learn.

* ``acc``: micro accuracy of the arg-max prediction.
* ``map``: mean over classes of average precision (scikit-learn's ``average_precision_score`` per class, on
  the softmax scores, one-vs-rest), averaged over the classes that occur in the labels -- the "MAP" of the
  OGM-GE lineage and of the IGM paper's audio-visual columns.
* ``macro_f1``: unweighted mean of per-class F1 of the arg-max prediction (``f1_score(average="macro")``).
* ``acc_<modality>``: accuracy of each modality's own logits.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, f1_score

METRICS = ("acc", "map", "macro_f1")


def _np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def accuracy(scores: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    s, y = _np(scores), _np(labels).astype(int)
    return float((s.argmax(1) == y).mean()) if len(y) else float("nan")


def mean_average_precision(scores: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of one-vs-rest average precision of ``scores``."""
    s, y = _np(scores), _np(labels).astype(int)
    present = np.unique(y)
    aps = [average_precision_score((y == c).astype(int), s[:, c]) for c in present]
    return float(np.mean(aps)) if aps else float("nan")


def macro_f1(scores: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    s, y = _np(scores), _np(labels).astype(int)
    labels_all = np.arange(s.shape[1])
    return float(f1_score(y, s.argmax(1), labels=labels_all, average="macro", zero_division=0))


def classification_metrics(
    logits: torch.Tensor,
    labels: torch.Tensor,
    unimodal_logits: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """acc / map / macro_f1 of the fused logits plus ``acc_<m>`` for each modality's logits."""
    probs = torch.softmax(logits.float(), dim=1)
    out = {
        "acc": accuracy(probs, labels),
        "map": mean_average_precision(probs, labels),
        "macro_f1": macro_f1(probs, labels),
    }
    for m, lg in (unimodal_logits or {}).items():
        out[f"acc_{m}"] = accuracy(lg, labels)
    return out
