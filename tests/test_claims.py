"""The claims check (benchmark/reports/claims.py), the imbalance column, the suite's report note and the
Figure 1 gradient cosine MLA records (issue #13).

The fixture tests/fixtures/reports/claims/ (make_fixtures.py, ``CLAIMS``) holds av_digits runs over seeds 0-2
whose numbers make every verdict occur, and one crema_d seed (no paired test possible).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.reports import claims as C
from benchmark.reports import data as D
from benchmark.reports import paper_tables as T
from benchmark.reports.render import build_tables, render_report

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "reports"
CSV = FIX / "claims" / "claims.csv"

# key -> verdict on av_digits, from the numbers in make_fixtures.CLAIMS / CLAIMS_SV / CLAIMS_COS.
EXPECTED = {
    "table1_acc": "holds",  # IGM .82 vs the best baseline MLA .75, differences .06/.07/.08
    "table1_map": "not significant",  # IGM vs MLA: -.01/+.01/-.01
    "table2_mie_mie_no_sam": "reversed",  # IGM .03 below w/o SAM in every seed
    "table2_mie_no_sam_mie_no_gm": "holds",
    "table2_mie_no_gm_mie_plain": "not significant",
    "table2_sam_audio": "holds",
    "table2_gm_audio": "reversed",
    "table2_sam_visual": "not significant",
    "table2_gm_visual": "holds",
    "table3_mie_no_a_gm": "holds",
    "table3_mie_no_v_gm": "not significant",
    "fig5a_fc1": "holds",  # IGM 41 below w/o SAM 82: "lower" claims hold when A < B
    "fig5a_fc2": "reversed",
    "fig5a_fc3": "not significant",
    "fig1_cosine": "holds",
    "imbalance": "holds",  # visual inside joint .30 against .50 alone
}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return D.load_results(CSV)


def _claims(frame: pd.DataFrame, dataset: str) -> dict[str, C.Claim]:
    return {c.key: c for c in C.claims_for(frame, D.Histories(CSV.parent), dataset, "best_val")}


def test_judge_rules_by_hand() -> None:
    a, b = {0: 0.80, 1: 0.82, 2: 0.84}, {0: 0.74, 1: 0.75, 2: 0.76}
    verdict, p = C.judge(a, b, higher=True)
    # Differences .06/.07/.08: t = .07 / (.01 / sqrt 3) = 12.124 with 2 d.o.f.; p = 1 - t / sqrt(t^2 + 2).
    t = 0.07 / (0.01 / math.sqrt(3))
    assert verdict == "holds" and p == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-3)
    assert C.judge(a, b, higher=False) == ("reversed", p)  # the same test, the claim the other way round
    assert C.judge({0: 0.5, 1: 0.6}, {0: 0.6, 1: 0.5}, higher=True)[0] == "not significant"
    assert C.judge(a, a, higher=True) == ("not significant", 1.0)  # no difference at all
    assert C.judge({0: 0.9}, {0: 0.1}, higher=True) == ("one seed", None)
    assert C.judge({0: 0.9, 1: 0.8}, {2: 0.1}, higher=True) == ("no data", None)  # no shared seed
    assert C.judge({}, b, higher=True) == ("no data", None)


def test_every_verdict_on_the_fixture(frame: pd.DataFrame) -> None:
    claims = _claims(frame, "av_digits")
    assert {k: c.judge()[0] for k, c in claims.items()} == EXPECTED
    # The best baseline is chosen per metric by mean: MLA (.75) above OGM (.703) and joint (.69).
    assert claims["table1_acc"].b_name == "MLA"
    # av_digits is not in the paper: its paper column is CREMA-D's, labelled as such.
    assert claims["table1_acc"].paper == "CREMA-D: .8105 vs .7970 (MLA*)"
    assert claims["table3_mie_no_a_gm"].paper == "CREMA-D: .8105 vs .7482"
    assert claims["fig5a_fc1"].paper == "CREMA-D: 45.0 vs 109.2"
    # Figure 5a averages each layer over modalities: fc1 of IGM is 40/41/42 per seed.
    assert claims["fig5a_fc1"].a == {0: 40.0, 1: 41.0, 2: 42.0}
    # Figure 1: the mean of the run's per-epoch cosines (c - .05, c + .05).
    assert claims["fig1_cosine"].a == pytest.approx({0: 0.30, 1: 0.32, 2: 0.31})
    assert claims["imbalance"].statement.startswith("Joint training under-trains the weak modality (Video")


def test_one_seed_and_missing_runs(frame: pd.DataFrame) -> None:
    claims = _claims(frame, "crema_d")
    assert claims["table1_acc"].judge() == ("one seed", None)
    assert claims["table1_acc"].paper == ".8105 vs .7970 (MLA*)"  # crema_d is in the paper
    assert claims["table2_mie_mie_no_sam"].judge()[0] == "no data"
    assert "mie_no_sam" in claims["table2_mie_mie_no_sam"].missing
    assert claims["imbalance"].judge()[0] == "no data"


def test_claims_files_and_report(tmp_path: Path) -> None:
    written = render_report(CSV, tmp_path, "claims", figures=False)
    md = (tmp_path / "claims" / "claims.md").read_text()
    tex = (tmp_path / "claims" / "claims.tex").read_text()
    assert tmp_path / "claims" / "claims.md" in written and tmp_path / "claims" / "claims.tex" in written
    assert md.startswith("# Claims check: suite claims")
    av = md[md.index("**Claims check (AV-Digits).**") :]
    row = next(ln for ln in av.splitlines() if ln.startswith("| IGM above every baseline (Acc) |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:] == [
        "Table 1",
        "CREMA-D: .8105 vs .7970 (MLA*)",
        "IGM .8200 ± .0200 vs MLA .7500 ± .0100",
        "+.0700 ± .0100",
        "0.007",
        "3",
        "holds",
    ]
    assert "8 holds, 5 not significant, 3 reversed." in av
    assert "2 one seed, 10 no data." in md
    assert "\\toprule" in tex and "\\resizebox{\\linewidth}" in tex and "tab:claims_av_digits" in tex
    assert tex.isascii()  # every symbol escaped for pdflatex (±, α, ×, −, Δ)
    report_tex = (tmp_path / "claims" / "report.tex").read_text()
    assert "\\input{claims}" in report_tex
    assert "Claims check (AV-Digits)" in (tmp_path / "claims" / "report.md").read_text()


def test_imbalance_column(frame: pd.DataFrame) -> None:
    assert T.weak_modality(frame[frame["dataset"] == "av_digits"], "best_val") == "visual"
    ratio = T.imbalance(frame, "best_val")
    joint = frame[(frame["label"] == "joint") & (frame["dataset"] == "av_digits")].index
    # Visual alone averages .50; joint's visual branch .30/.31/.29.
    assert ratio[joint].tolist() == pytest.approx([0.60, 0.62, 0.58])
    assert ratio[frame["dataset"] == "crema_d"].isna().all()  # no unimodal runs there
    tables = {t.key: t for t in build_tables(CSV)}
    t1 = tables["table1"]
    # crema_d (first in the paper's order) has no unimodal runs, hence no imbalance column.
    assert [c[:2] for c in t1.columns] == [
        ("CREMA-D", "Acc"),
        ("CREMA-D", "MAP"),
        ("AV-Digits", "Acc"),
        ("AV-Digits", "MAP"),
        ("AV-Digits", "Imb. (Video)"),
    ]
    assert dict(t1.rows)["Baseline"][4].value == pytest.approx(0.60)
    assert "Imb. (m) = the weak modality" in t1.caption
    assert "Imb. (Video)" in [c[1] for c in tables["summary_av_digits"].columns]


def test_report_only_writes_claims_without_torch(tmp_path: Path) -> None:
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    (results / "claims.csv").write_bytes(CSV.read_bytes())
    for run in (CSV.parent / "runs").iterdir():
        (results / "runs" / run.name).mkdir()
        (results / "runs" / run.name / "history.json").write_bytes((run / "history.json").read_bytes())
    code = (
        "import sys, run_all\n"
        f"rc = run_all.main(['--report-only', '--results', {str(results)!r}, '--reports', {str(tmp_path / 'rep')!r}])\n"
        "assert 'torch' not in sys.modules, 'report-only imported torch'\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Claims check (AV-Digits): 8 holds, 5 not significant, 3 reversed" in proc.stdout
    assert (tmp_path / "rep" / "claims" / "claims.md").exists()


def test_quick_report_says_it_is_a_smoke_test(tmp_path: Path) -> None:
    """The quick suite's note heads its report and the captions where methods are compared."""
    csv = FIX / "real_quick" / "quick.csv"
    render_report(csv, tmp_path, "quick", figures=False)
    md = (tmp_path / "quick" / "report.md").read_text()
    assert "**Note.** Smoke test: 6 epochs" in md and "mini suite" in md
    assert "Smoke test: 6 epochs" in (tmp_path / "quick" / "table1.md").read_text()
    assert "Smoke test" in (tmp_path / "quick" / "report.tex").read_text()
    # A CSV that is no registered suite gets no note.
    render_report(csv, tmp_path, "not_a_suite", figures=False)
    assert "Smoke test" not in (tmp_path / "not_a_suite" / "report.md").read_text()


# -- MLA's gradient cosine (Figure 1) ---------------------------------------------------------------------------
def test_mla_logs_cosine_between_successive_modality_gradients() -> None:
    from conftest import short_config

    from benchmark.trainer import build_run

    method = build_run(short_config("mla", **{"train.max_steps_per_epoch": 2})).method
    method.log_head_gradient(torch.tensor([[1.0, 0.0]]))
    method.log_head_gradient(torch.tensor([[1.0, 1.0]]))  # cos = 1 / sqrt 2
    method.log_head_gradient(torch.tensor([[0.0, -1.0]]))  # cos = -1 / sqrt 2
    method.on_epoch_end(0)
    (entry,) = method.artifacts()["grad_cosine"]
    assert entry["cosine"] == pytest.approx(0.0, abs=1e-7) and entry["steps"] == 2
    assert entry["cosine_max"] == pytest.approx(1 / math.sqrt(2)) and entry["epoch"] == 1
    assert method.extra_state()["grad_cosine"] == method.artifacts()["grad_cosine"]


def test_mla_cosine_uses_the_gradients_the_optimiser_applies() -> None:
    from conftest import short_config

    from benchmark.trainer import build_run

    method = build_run(short_config("mla", **{"train.max_steps_per_epoch": 1})).method
    batch = next(iter(method.ctx.batches(method.train_loader(0))))
    seen = []
    step = method.optimizer.step

    def spy() -> None:
        seen.append(method.model.head.weight.grad.detach().reshape(-1).clone())
        step()

    method.optimizer.step = spy
    method.training_step(batch, 0)
    method.on_epoch_end(0)
    (entry,) = method.artifacts()["grad_cosine"]
    expected = float(torch.nn.functional.cosine_similarity(seen[1], seen[0], dim=0))
    assert len(seen) == 2 and entry["cosine"] == pytest.approx(expected, abs=1e-6)
