"""The mini suite: Tables 1-3 and Figure 5a of the IGM paper in miniature, converged, on the embedded dataset.

Every registered method on ``av_digits`` (whose imbalance has CREMA-D's signature: ``scripts/check_signature.py``),
three seeds, trained to convergence with a schedule that keeps each method's structure (``SCHEDULES``):

* ``EPOCHS`` epochs for a method that trains every modality in every epoch (validation accuracy has plateaued
  by then for the unimodal and joint runs, which the signature check shows);
* MIE/IGM and its ablations: stages in the released CREMA-D ratio (audio 25 : visual 50 epochs) for two outer
  iterations (Table 3 reads the second), the visual stages adding up to ``EPOCHS`` (1.5 ``EPOCHS`` in all; an
  MIE epoch trains one modality), with the official restart of every stage from the best checkpoint
  (selected on validation);
* ReconBoost: stages of a learner phase and a rectification phase of equal length (official 4 + 4), its
  learners starting from this suite's own ``unimodal`` runs (``method.unimodal_epochs`` = ``EPOCHS``);
* SMV: re-sampling from the same share of the run as the released setting (epoch 5 of 60);
* G-Blending: four super-epochs, a blend-weight estimate at the start of each;
* OGM/OGM-GE and PMR: modulation over the same share of the run as the official configs (50 of 100 and
  100 of 150 epochs); AGM over the whole run (as its author states); MSES's patience and MSLR's window scaled
  the same way.

The learning rate and each method's main knob are each method's ``av_digits`` defaults, chosen on the validation
split from ``TUNING_GRID`` by the ``mini_tune`` suite and ``scripts/select_mini.py`` (the same budget for every
method: 3 learning rates x 2 values of the knob, one seed, this suite's schedule; 102 runs, 40 min on 2 cores).
The grid's results, every point's score and the choice are in ``docs/results/mini_tune/``;
``scripts/select_mini.py --check`` verifies that the defaults hold it. The MIE ablations use IGM's values (an
ablation changes one component, nothing else).

Run it with ``python run_all.py --suite mini --cluster local --workers 2``; the README gives its measured wall
time and results. ``--report-only --suite mini`` writes the claims check (``reports/mini/claims.md``).
"""

from __future__ import annotations

from itertools import product
from typing import Any

from benchmark.registry import register_suite
from benchmark.suites import Suite

EPOCHS = 16
SEEDS = (0, 1, 2)

# MIE: audio : visual = 1 : 2 (released CREMA-D 25 : 50), two outer iterations; the visual stages add up to
# EPOCHS, so that the weak modality trains as long as in every other method (an MIE epoch trains one modality).
MIE_STAGES = (EPOCHS // 4, EPOCHS // 2) * 2
_MIE = {"train.epochs": sum(MIE_STAGES), "method.stage_epochs": MIE_STAGES, "method.restart_select": "auto"}

SCHEDULES: dict[str, dict[str, Any]] = {
    "unimodal": {"train.epochs": EPOCHS},
    "joint": {"train.epochs": EPOCHS},
    "ogm": {"train.epochs": EPOCHS, "method.modulation_ends": EPOCHS // 2 - 1},
    "ogm_ge": {"train.epochs": EPOCHS, "method.modulation_ends": EPOCHS // 2 - 1},
    "agm": {"train.epochs": EPOCHS, "method.modulation_ends": EPOCHS - 1},
    "pmr": {"train.epochs": EPOCHS, "method.modulation_ends": 2 * EPOCHS // 3 - 1},
    "mla": {"train.epochs": EPOCHS},
    "reconboost": {
        "train.epochs": EPOCHS,
        "method.epochs_per_stage": 2,
        "method.correct_epoch": 2,
        "method.unimodal_epochs": EPOCHS,
    },
    "mmpareto": {"train.epochs": EPOCHS},
    "msam": {"train.epochs": EPOCHS},
    "gblending": {"train.epochs": EPOCHS, "method.super_epoch": EPOCHS // 4},
    "mses": {"train.epochs": EPOCHS, "method.patience": max(2, EPOCHS // 5)},
    "mslr": {"train.epochs": EPOCHS, "method.window": 5},
    "domfn": {"train.epochs": EPOCHS},
    "smv": {"train.epochs": EPOCHS, "method.warmup": max(2, round(EPOCHS * 5 / 60))},
    **{m: dict(_MIE) for m in ("mie", "mie_no_sam", "mie_no_gm", "mie_plain", "mie_no_a_gm", "mie_no_v_gm")},
}

SGD_LRS = (3e-3, 1e-2, 3e-2)
WEIGHT_DECAY = (1e-4, 1e-3)
# Per method: the learning rate x its main knob (where it has none: the weight decay). Selected on validation.
TUNING_GRID: dict[str, dict[str, tuple]] = {
    "unimodal": {"train.lr": SGD_LRS, "train.weight_decay": WEIGHT_DECAY},
    "joint": {"train.lr": SGD_LRS, "train.weight_decay": WEIGHT_DECAY},
    "ogm": {"train.lr": SGD_LRS, "method.alpha": (0.3, 0.8)},
    "ogm_ge": {"train.lr": SGD_LRS, "method.alpha": (0.3, 0.8)},
    "agm": {"train.lr": SGD_LRS, "method.alpha": (0.5, 1.5)},
    "pmr": {"train.lr": SGD_LRS, "method.alpha": (0.5, 1.0)},
    "mla": {"train.lr": SGD_LRS, "train.weight_decay": WEIGHT_DECAY},
    "reconboost": {"train.lr": SGD_LRS, "method.w1": (2.0, 5.0)},
    "mmpareto": {"train.lr": SGD_LRS, "method.gamma": (1.0, 1.5)},
    "msam": {"train.lr": SGD_LRS, "method.rho": (0.05, 0.2)},
    "gblending": {"train.lr": SGD_LRS, "train.weight_decay": WEIGHT_DECAY},
    "mses": {"train.lr": SGD_LRS, "train.weight_decay": WEIGHT_DECAY},
    "mslr": {"train.lr": SGD_LRS, "train.weight_decay": WEIGHT_DECAY},
    "domfn": {"train.lr": (3e-4, 1e-3, 3e-3), "method.eta": (0.1, 0.5)},  # Adam (its released optimiser)
    "smv": {"train.lr": SGD_LRS, "train.weight_decay": WEIGHT_DECAY},
    "mie": {"train.lr": SGD_LRS, "method.tau": (0.4, 1.3)},
}


def grid_points(method: str) -> tuple[dict[str, Any], ...]:
    """Every combination of ``TUNING_GRID[method]``, in the grid's order."""
    keys = list(TUNING_GRID[method])
    return tuple(dict(zip(keys, values)) for values in product(*(TUNING_GRID[method][k] for k in keys)))


register_suite(
    Suite(
        name="mini",
        description="the paper in miniature: every method converged on av_digits, 3 seeds (<= 45 min, 2 cores)",
        datasets=("av_digits",),
        methods=None,
        seeds=SEEDS,
        method_overrides=SCHEDULES,
        report_note=(
            "Miniature of the paper on the embedded av_digits dataset (CREMA-D's imbalance signature, not CREMA-D): "
            "every method trained for the same converged budget, 3 seeds, with its learning rate and main knob "
            "chosen on validation by the mini_tune grid (the same budget for every method). Compare the claims "
            "check with the paper's claims, not the numbers."
        ),
    )
)

register_suite(
    Suite(
        name="mini_tune",
        description="the mini suite's tuning grid (learning rate x main knob, seed 0); select: scripts/select_mini.py",
        datasets=("av_digits",),
        methods=tuple(TUNING_GRID),
        seeds=(0,),
        method_overrides=SCHEDULES,
        method_grids={m: grid_points(m) for m in TUNING_GRID},
    )
)
