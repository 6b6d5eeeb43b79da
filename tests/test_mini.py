"""The mini suite and its tuning machinery (benchmark/suites/mini.py, scripts/select_mini.py) and the signature
check of the embedded dataset (scripts/check_signature.py), issue #13.

The signature criteria themselves need converged runs (minutes per seed): the README quotes the script's
output; here the script's logic runs on hand-made numbers and on a one-step setting.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmark.config import build_config
from benchmark.registry import METHODS, SUITES
from benchmark.runner import resolve
from benchmark.suites import mini

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import check_signature as sig  # noqa: E402
import select_mini  # noqa: E402


# -- the suites -------------------------------------------------------------------------------------------------
def test_mini_runs_every_method_three_seeds_with_its_schedule() -> None:
    suite = SUITES.get("mini")
    specs = suite.specs()
    assert {s.method for s in specs} == set(METHODS.names())
    assert {s.seed for s in specs} == {0, 1, 2}
    assert set(mini.SCHEDULES) <= set(METHODS.names())
    for spec in specs:
        assert spec.overrides.get("train.epochs") == mini.SCHEDULES[spec.method]["train.epochs"], spec.method


def test_mie_stages_keep_the_released_ratio_and_two_outer_iterations() -> None:
    stages = mini.SCHEDULES["mie"]["method.stage_epochs"]
    assert len(stages) == 4 and stages[0::2] == stages[:1] * 2 and stages[1::2] == stages[1:2] * 2
    assert stages[1] == 2 * stages[0]  # CREMA-D: audio 25, visual 50 epochs
    cfg = build_config("mie", "av_digits", 0, mini.SCHEDULES["mie"])
    assert cfg.train.epochs == sum(stages) and cfg.method_cfg.restart_select == "auto"


def test_reconboost_starts_from_the_suites_own_unimodal_runs() -> None:
    """ReconBoost's learners load the unimodal runs of the same suite (no extra training): the runs its
    configuration requires are the suite's own unimodal runs, with the same run ids."""
    suite = SUITES.get("mini")
    (recon,) = [c for c in resolve(suite.specs(methods=["reconboost"], seeds=[1])) if c.method == "reconboost"]
    uni_ids = {c.run_id for c in resolve(suite.specs(methods=["unimodal"], seeds=[1]))}
    assert len(uni_ids) == 2 and {dep.run_id for dep in recon.requires} == uni_ids


def test_tuning_suite_is_the_grid_on_the_mini_schedule() -> None:
    suite = SUITES.get("mini_tune")
    specs = suite.specs()
    for method, axes in mini.TUNING_GRID.items():
        mine = [s for s in specs if s.method == method]
        per_run = 2 if method == "unimodal" else 1  # one unimodal run per modality
        assert len(mine) == 6 * per_run, method  # the same budget: 3 learning rates x 2 values of the knob
        assert {tuple(s.overrides[k] for k in axes) for s in mine} == set(
            tuple(p[k] for k in axes) for p in mini.grid_points(method)
        )
        assert all(s.overrides["train.epochs"] == mini.SCHEDULES[method]["train.epochs"] for s in mine)
    # The ablations are not tuned: they keep IGM's values.
    assert not any(s.method.startswith("mie_") for s in specs)
    assert len(resolve(specs)) == len(specs)  # every grid point is its own run


# -- selection on validation --------------------------------------------------------------------------------------
def _tune_rows() -> pd.DataFrame:
    rows = []
    grid = {"ogm": {"train.lr": (0.01, 0.03), "method.alpha": (0.3, 0.8)}}
    vals = {(0.01, 0.3): 0.70, (0.01, 0.8): 0.74, (0.03, 0.3): 0.74, (0.03, 0.8): 0.60}
    for (lr, alpha), v in vals.items():
        # The test accuracy disagrees with validation on purpose: selection must never read it.
        rows.append(
            {
                "status": "ok",
                "method": "ogm",
                "seed": 0,
                "train.lr": lr,
                "method.alpha": alpha,
                "select_metric": "acc",
                "val_acc[best_val]": v,
                "test_acc[best_val]": 1.0 - v,
            }
        )
    return pd.DataFrame(rows), grid


def test_select_picks_the_best_validation_point_first_on_ties() -> None:
    frame, grid = _tune_rows()
    result = select_mini.select(frame, grid)["ogm"]
    assert result["chosen"] == {"train.lr": 0.01, "method.alpha": 0.8}  # tie with (0.03, 0.3): grid order
    assert [s["val"] for s in result["scores"]] == [0.70, 0.74, 0.74, 0.60]
    assert select_mini.snippet("ogm", result).splitlines() == [
        "# mini_tune (scripts/select_mini.py, validation accuracy): train.lr in (0.01, 0.03) x "
        "method.alpha in (0.3, 0.8)",
        '"train.lr": 0.01,',
        '"method.alpha": 0.8,',
    ]


def test_select_refuses_an_incomplete_grid_unless_partial() -> None:
    frame, grid = _tune_rows()
    frame = frame.iloc[:3]
    assert select_mini.select(frame, grid)["ogm"]["chosen"] is None
    assert select_mini.select(frame, grid)["ogm"]["missing"] == [{"train.lr": 0.03, "method.alpha": 0.8}]
    assert select_mini.select(frame, grid, partial=True)["ogm"]["chosen"] == {"train.lr": 0.01, "method.alpha": 0.8}


def test_check_compares_the_choice_with_the_av_digits_defaults() -> None:
    lr = build_config("joint", "av_digits").train.lr
    ok = {"joint": {"chosen": {"train.lr": lr}}}
    assert select_mini.check(ok) == []
    bad = {"joint": {"chosen": {"train.lr": lr * 3}}, "ogm": {"chosen": None}}
    problems = select_mini.check(bad)
    assert problems[0].startswith(f"joint: train.lr is {lr!r}, chosen {lr * 3!r}")
    assert problems[1] == "ogm: no choice stored (grid incomplete)"


def test_select_script_end_to_end(tmp_path: Path) -> None:
    frame, _ = _tune_rows()
    frame.to_csv(tmp_path / "mini_tune.csv", index=False)
    out = tmp_path / "choice.json"
    assert select_mini.main(["--csv", str(tmp_path / "mini_tune.csv"), "--out", str(out)]) == 0
    stored = json.loads(out.read_text())
    assert set(stored) == set(mini.TUNING_GRID)
    assert stored["ogm"]["chosen"] is None  # the fixture has 4 of ogm's 6 points
    assert select_mini.main(["--csv", str(tmp_path / "nope.csv"), "--out", str(out)]) == 2


# -- the signature check --------------------------------------------------------------------------------------------
def _seed(seed: int, audio: float, visual: float, joint: float, late: float) -> sig.SeedResult:
    return sig.SeedResult(seed, {"audio": audio, "visual": visual}, joint, late)


def test_signature_criteria_by_hand() -> None:
    # CREMA-D-like: joint .6465 against audio .6317, visual .4583, late fusion .80.
    good = [_seed(0, 0.63, 0.46, 0.65, 0.80), _seed(1, 0.64, 0.45, 0.64, 0.79)]
    crits = sig.criteria(good)
    assert [c.holds for c in crits] == [True, True, True]
    assert crits[0].name.startswith("|joint - audio alone|")
    assert crits[0].value == pytest.approx(abs(0.645 - 0.635))
    assert crits[1].value == pytest.approx(0.18) and crits[2].value == pytest.approx(0.15)
    # The old av_digits: joint far above both modalities, little headroom for late fusion.
    bad = [_seed(0, 0.73, 0.51, 0.86, 0.88)]
    assert [c.holds for c in sig.criteria(bad)] == [False, True, False]
    # The dominant modality is read from the data: here visual.
    assert sig.dominant_and_weak([_seed(0, 0.4, 0.7, 0.7, 0.8)]) == ("visual", "audio")
    text = sig.format_report(bad, sig.criteria(bad), "header")
    assert "FAIL  late fusion - joint: 0.0200 (criterion >= 0.08)" in text
    assert text.splitlines()[-1] == "signature does NOT hold"


def test_signature_script_runs_on_a_cheap_setting(tmp_path: Path) -> None:
    out = tmp_path / "sig.json"
    argv = ["--seeds", "0", "--json", str(out), "--set", "train.epochs=1"]
    argv += ["--set", "train.max_steps_per_epoch=2", "--set", "model.resnet_width=4"]
    rc = sig.main(argv)
    payload = json.loads(out.read_text())
    assert rc == (0 if all(c["holds"] for c in payload["criteria"]) else 1)
    (seed,) = payload["seeds"]
    assert set(seed["unimodal"]) == {"audio", "visual"}
    assert 0.0 <= seed["late_fusion"] <= 1.0 and 0.0 <= seed["joint"] <= 1.0
    assert len(payload["criteria"]) == 3


def test_every_method_holds_the_committed_mini_tune_choice() -> None:
    """The av_digits defaults are the grid's choice on validation (docs/results/mini_tune/), for every method of
    the grid, so the mini suite runs tuned methods and ``select_mini.py --check`` agrees."""
    choice = json.loads(select_mini.CHOICE.read_text())
    assert set(choice) == set(mini.TUNING_GRID)
    assert all(choice[m]["chosen"] for m in choice)
    assert select_mini.check(choice) == []
    # the ablations of MIE inherit IGM's values
    for ablation in ("mie_no_sam", "mie_no_gm", "mie_plain", "mie_no_a_gm", "mie_no_v_gm"):
        cfg = build_config(ablation, "av_digits")
        assert cfg.train.lr == choice["mie"]["chosen"]["train.lr"]
        assert cfg.section("method").tau == choice["mie"]["chosen"]["method.tau"]
