"""Evaluation of a method on a whole split: the metrics the trainer records each epoch."""

from __future__ import annotations

import torch

from benchmark.method import Method, eval_mode
from benchmark.metrics import classification_metrics


class NonFiniteOutputError(FloatingPointError):
    """Evaluation produced NaN or infinite logits (diverged weights or BatchNorm statistics); the run fails."""


@torch.no_grad()
def evaluate(method: Method, split: str) -> dict[str, float]:
    """Metrics of ``method.predict`` on a whole split (model in eval mode, its mode restored afterwards)."""
    logits, labels = [], []
    uni: dict[str, list[torch.Tensor]] = {}
    with eval_mode(method.model):
        for batch in method.ctx.batches(method.ctx.loader(split)):
            out = method.predict(batch)
            logits.append(out.logits.float().cpu())
            labels.append(batch["label"].cpu())
            for m, lg in out.unimodal_logits.items():
                uni.setdefault(m, []).append(lg.float().cpu())
    fused, per_modality = torch.cat(logits), {m: torch.cat(v) for m, v in uni.items()}
    for name, values in {"fused": fused, **per_modality}.items():
        if not torch.isfinite(values).all():
            raise NonFiniteOutputError(
                f"non-finite {name} logits on the {split} split ({int((~torch.isfinite(values)).sum())} values) "
                "in evaluation mode: the weights or BatchNorm running statistics diverged although the training "
                "loss stayed finite; lower train.lr or use a larger train.batch_size / data.image_size"
            )
    return classification_metrics(fused, torch.cat(labels), per_modality)
