"""Does an embedded dataset show CREMA-D's imbalance signature? (issue #13, criteria fixed before any method ran)

    python scripts/check_signature.py                          # av_digits, seeds 0 1 2, the dataset's defaults
    python scripts/check_signature.py --seeds 0 --set train.epochs=20 --set data.visual_noise=0.8

Trains, for every seed, each modality's ``unimodal`` model and ``joint`` training through the suite's own
trainer (each model's own defaults for the dataset, then ``--set``, which applies to all three), and the late
fusion of the unimodal models: the mean of their softmax outputs, each model at its own best-validation epoch.
Every number is test accuracy at the
best-validation epoch (the ``[best_val]`` rule). The criteria, on the means over seeds:

1. joint training is within ``JOINT_GAP`` (3 points) of the dominant modality trained alone (CREMA-D:
   joint .6465 against .6317);
2. the weak modality alone is at least ``WEAK_GAP`` (15 points) below the dominant one (CREMA-D: .4583);
3. the late fusion is at least ``FUSION_GAIN`` (8 points) above joint training: there is headroom for a
   balancing method (CREMA-D: the best methods reach .79-.81).

The dominant modality is the one whose unimodal model is more accurate. Exit status 0 when every criterion
holds, 1 otherwise. ``--json FILE`` stores every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

JOINT_GAP = 0.03
WEAK_GAP = 0.15
FUSION_GAIN = 0.08


@dataclass
class Criterion:
    name: str
    value: float  # mean over seeds of the quantity the criterion bounds
    std: float | None
    bound: str  # the condition in words, e.g. "<= 0.03"
    holds: bool


@dataclass
class SeedResult:
    """Test accuracies ([best_val]) of one seed: each unimodal model, joint training and the late fusion."""

    seed: int
    unimodal: dict[str, float]
    joint: float
    late_fusion: float
    extra: dict[str, Any] = field(default_factory=dict)


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None)


def dominant_and_weak(results: list[SeedResult]) -> tuple[str, str]:
    """The modality whose unimodal model is most accurate on average, and the least accurate one."""
    mods = list(results[0].unimodal)
    means = {m: float(np.mean([r.unimodal[m] for r in results])) for m in mods}
    ranked = sorted(mods, key=lambda m: -means[m])
    return ranked[0], ranked[-1]


def criteria(results: list[SeedResult]) -> list[Criterion]:
    """The three signature criteria on the per-seed results (means over seeds decide)."""
    if not results:
        raise ValueError("no results: train at least one seed")
    dom, weak = dominant_and_weak(results)
    joint_gap = [abs(r.joint - r.unimodal[dom]) for r in results]
    weak_gap = [r.unimodal[dom] - r.unimodal[weak] for r in results]
    fusion_gain = [r.late_fusion - r.joint for r in results]
    out = []
    # Criterion 1 bounds the distance of the means (a seed-wise |.| would count noise as distance).
    joint_mean = float(np.mean([r.joint for r in results]))
    dom_mean = float(np.mean([r.unimodal[dom] for r in results]))
    gap = abs(joint_mean - dom_mean)
    out.append(
        Criterion(
            f"|joint - {dom} alone| (dominant)",
            gap,
            _mean_std(joint_gap)[1],
            f"<= {JOINT_GAP:.2f}",
            gap <= JOINT_GAP,
        )
    )
    m, s = _mean_std(weak_gap)
    out.append(Criterion(f"{dom} alone - {weak} alone", m, s, f">= {WEAK_GAP:.2f}", m >= WEAK_GAP))
    m, s = _mean_std(fusion_gain)
    out.append(Criterion("late fusion - joint", m, s, f">= {FUSION_GAIN:.2f}", m >= FUSION_GAIN))
    return out


def format_report(results: list[SeedResult], crits: list[Criterion], header: str = "") -> str:
    """The per-seed table, the means and the criteria, as printed (and quoted in the README)."""
    mods = list(results[0].unimodal)
    cols = [f"{m} alone" for m in mods] + ["joint", "late fusion"]
    lines = [header] if header else []
    lines.append("seed  " + "  ".join(f"{c:>12s}" for c in cols))
    rows = [[*(r.unimodal[m] for m in mods), r.joint, r.late_fusion] for r in results]
    for r, vals in zip(results, rows):
        lines.append(f"{r.seed:<4d}  " + "  ".join(f"{v:12.4f}" for v in vals))
    means = [_mean_std([row[i] for row in rows]) for i in range(len(cols))]
    lines.append(
        "mean  " + "  ".join(f"{m:.4f}±{s:.4f}".rjust(12) if s is not None else f"{m:12.4f}" for m, s in means)
    )
    lines.append("")
    for c in crits:
        spread = f" ± {c.std:.4f}" if c.std is not None else ""
        lines.append(f"{'PASS' if c.holds else 'FAIL'}  {c.name}: {c.value:.4f}{spread} (criterion {c.bound})")
    lines.append("signature holds" if all(c.holds for c in crits) else "signature does NOT hold")
    return "\n".join(lines)


# -- training (torch from here on) ---------------------------------------------------------------------------
def _train(method: str, dataset: str, seed: int, overrides: dict[str, Any]) -> tuple[dict[str, Any], list[dict]]:
    """One run through the suite's trainer (no result store); returns its row and, per epoch, the softmax
    outputs on val and test (captured from the evaluation the trainer runs anyway) and the labels."""
    import torch

    from benchmark.config import build_config
    from benchmark.trainer import fit

    cfg = build_config(method, dataset, seed, overrides)
    epochs: list[dict] = []
    buf: list[tuple[torch.Tensor, torch.Tensor]] = []

    def attach(m: Any) -> None:
        predict, end = m.predict, m.on_evaluation_end
        n_val = len(m.ctx.splits["val"])

        def recording_predict(batch: dict) -> Any:
            out = predict(batch)
            buf.append((torch.softmax(out.logits.float(), dim=1).cpu(), batch["label"].cpu()))
            return out

        def recording_end(epoch: int, metrics: dict) -> None:
            probs = torch.cat([p for p, _ in buf])
            labels = torch.cat([y for _, y in buf])
            buf.clear()
            epochs.append(
                {"val": probs[:n_val], "test": probs[n_val:], "val_y": labels[:n_val], "test_y": labels[n_val:]}
            )
            end(epoch, metrics)

        m.predict, m.on_evaluation_end = recording_predict, recording_end

    row = fit(cfg, None, progress=False, on_model=attach)
    return row, epochs


def run_seed(dataset: str, seed: int, overrides: dict[str, Any], log: Any = print) -> SeedResult:
    from benchmark.registry import DATASETS

    info = DATASETS.get(dataset)(DATASETS.get(dataset).Config()).info
    uni, probs, extra = {}, [], {}
    for m in info.modalities:
        row, epochs = _train("unimodal", dataset, seed, {**overrides, "method.modality": m})
        best = int(row["epoch[best_val]"]) - 1
        uni[m] = float(row["test_acc[best_val]"])
        probs.append(epochs[best])
        extra[f"{m}_epoch"] = best + 1
        extra[f"{m}_last"] = float(row["test_acc[last]"])
        log(f"  seed {seed}: {m} alone {uni[m]:.4f} (epoch {best + 1}; last {extra[f'{m}_last']:.4f})")
    row, _ = _train("joint", dataset, seed, overrides)
    joint = float(row["test_acc[best_val]"])
    extra["joint_epoch"] = int(row["epoch[best_val]"])
    extra["joint_last"] = float(row["test_acc[last]"])
    for m in info.modalities:
        extra[f"joint_{m}_branch"] = float(row[f"test_acc_{m}[best_val]"])
    log(f"  seed {seed}: joint {joint:.4f} (epoch {extra['joint_epoch']}; last {extra['joint_last']:.4f})")
    fused = sum(p["test"] for p in probs) / len(probs)
    labels = probs[0]["test_y"]
    late = float((fused.argmax(dim=1) == labels).double().mean())
    log(f"  seed {seed}: late fusion {late:.4f}")
    return SeedResult(seed, uni, joint, late, extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="av_digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this file")
    args = parser.parse_args(argv)

    import torch

    from benchmark.config import parse_set_args

    torch.set_num_threads(args.threads)
    overrides = parse_set_args(args.sets)
    results = [run_seed(args.dataset, s, overrides) for s in args.seeds]
    crits = criteria(results)
    header = f"{args.dataset}, seeds {' '.join(map(str, args.seeds))}, overrides {overrides or 'none'}"
    print(format_report(results, crits, header))
    if args.json:
        payload = {
            "dataset": args.dataset,
            "overrides": overrides,
            "seeds": [r.__dict__ for r in results],
            "criteria": [c.__dict__ for c in crits],
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 0 if all(c.holds for c in crits) else 1


if __name__ == "__main__":
    sys.exit(main())
