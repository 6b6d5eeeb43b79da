"""Reports from fixture CSVs (tests/fixtures/reports/, written by make_fixtures.py with hand-picked numbers).

Expected marks, from the fixture numbers (CREMA-D, three seeds):
- Acc: IGM .8205 (best, bold), IGM w/o SAM .8000 (second, underlined), MLA .7800 = best baseline (°);
  Baseline .6000 < Unimodal (visual) .6200 -> dagger.
- IGM vs MLA, Acc: differences .0505/.0405/.0305 -> t = .0405 / (.01/sqrt 3) = 7.0148 with 2 d.o.f.; for 2 d.o.f.
  the two-sided p = 1 - t / sqrt(t^2 + 2) = .0197 -> "*". MAP: differences .05/.0501/.0499 -> p < .01 -> "**".
- IGM w/o SAM vs MLA: differences .03/.02/.01 -> t = 3.464, p = .0742 -> no mark.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmark.reports import data as D
from benchmark.reports.marks import paired_p
from benchmark.reports.render import build_tables, render_report
from benchmark.reports.typeset import fmt_number

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "reports"
REGISTRY_NAMES = {
    *("joint", "unimodal", "ogm", "ogm_ge", "agm", "pmr", "mla", "reconboost", "mmpareto", "msam", "gblending"),
    *("mses", "mslr", "domfn", "smv", "mie", "mie_no_sam", "mie_no_gm", "mie_plain", "mie_no_a_gm", "mie_no_v_gm"),
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reports")
    for name in ("main", "sweeps", "sensitivity"):
        render_report(FIX / name / f"{name}.csv", out, name)
    return out


def _row(tex: str, label: str) -> str:
    lines = [ln for ln in tex.splitlines() if ln.startswith(label + " & ")]
    assert len(lines) == 1, f"no single row {label!r} in:\n{tex}"
    return lines[0]


# -- number format and the paper's data -----------------------------------------------------------------------
def test_number_format_is_the_papers() -> None:
    assert fmt_number(0.81054) == ".8105"
    assert fmt_number(0.0325) == ".0325"
    assert fmt_number(1.0) == "1.0000"
    assert fmt_number(0.0123, "diff") == "+.0123"
    assert fmt_number(-0.0123, "diff") == "-.0123"
    assert fmt_number(0.8105, "pct") == "81.05"
    assert fmt_number(float("nan")) == "–"
    with pytest.raises(ValueError, match="unknown number format"):
        fmt_number(0.5, "sci")


def test_paper_tables_are_complete_and_use_registry_names() -> None:
    t1 = D.paper("table1")
    assert len(t1) == 148  # 17 rows x 10 columns minus the 22 dashes of the paper
    igm = t1[(t1["label"] == "mie") & (t1["dataset"] == "crema_d")].set_index("metric")["value"]
    assert igm["acc"] == pytest.approx(0.8105) and igm["map"] == pytest.approx(0.8948)
    mses = t1[(t1["label"] == "mses") & (t1["dataset"] == "crema_d")]
    assert mses["dagger"].tolist() == [1, 1]
    gb = t1[(t1["label"] == "gblending") & (t1["dataset"] == "crema_d")].set_index("metric")["dagger"]
    assert gb["map"] == 1 and gb["acc"] == 0
    nv = t1[(t1["dataset"] == "nvgesture") & t1["label"].str.startswith("unimodal_")]
    assert set(nv["label"]) == {"unimodal_rgb", "unimodal_flow", "unimodal_depth"}
    for name in ("table1", "table2", "table3", "fig5a_singular_values", "fig5b_clip", "fig5c_time"):
        labels = set(D.paper(name)["label"])
        unknown = {x for x in labels if x not in REGISTRY_NAMES and not x.startswith("unimodal_")}
        assert unknown <= {"mla*"}, (name, unknown)
    # The figure read-offs agree with the tables at their anchors.
    f3 = D.paper("fig3_sensitivity")
    anchor = f3[(f3["param"] == "tau") & (f3["value"] == 0.4)].set_index("metric")["paper_value"]
    assert anchor["acc"] == igm["acc"] and anchor["map"] == igm["map"]
    t2 = D.paper("table2").query("label == 'mie' and metric == 'acc'")["value"].item()
    assert t2 == igm["acc"]


def test_paired_test_matches_hand_computation() -> None:
    igm = {0: 0.8105, 1: 0.8205, 2: 0.8305}
    mla = {0: 0.76, 1: 0.78, 2: 0.80}
    t = 0.0405 / (0.01 / math.sqrt(3))
    assert paired_p(igm, mla) == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-3)
    assert paired_p({0: 0.5}, {0: 0.4}) is None  # one shared seed: no test
    assert paired_p({0: 0.5, 1: 0.6}, {2: 0.4, 3: 0.5}) is None  # no shared seed


# -- Table 1 ------------------------------------------------------------------------------------------------
def test_table1_latex_marks_and_paper_columns(reports: Path) -> None:
    tex = (reports / "main" / "table1_crema_d.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    # Imb. (Audio): the weak modality (audio, .52 alone against .62 for visual) inside the model / alone.
    assert " & \\multicolumn{3}{c}{Acc} & \\multicolumn{3}{c}{MAP} & Imb. (Audio) \\\\" in tex
    assert " & ours & paper & $\\Delta$ & ours & paper & $\\Delta$ &  \\\\" in tex
    assert "the best validation score (rule best\\_val)" in tex
    assert _row(tex, "IGM") == (
        "IGM & \\textbf{.8205}{\\scriptsize$\\pm$.0100}$^{*}$ & .8105 & +.0100 & "
        "\\textbf{.9100}{\\scriptsize$\\pm$.0100}$^{**}$ & .8948 & +.0152 & 1.3856{\\scriptsize$\\pm$.0192} \\\\"
    )
    assert _row(tex, "IGM w/o SAM") == (
        "IGM w/o SAM & \\underline{.8000}{\\scriptsize$\\pm$.0100} & .8026 & $-$.0026 & "
        "\\underline{.8800}{\\scriptsize$\\pm$.0000} & .8830 & $-$.0030 & 1.3462{\\scriptsize$\\pm$.0192} \\\\"
    )
    assert _row(tex, "MLA") == (
        "MLA & .7800{\\scriptsize$\\pm$.0200}$^{\\circ}$ & .7943 & $-$.0143 & "
        ".8600{\\scriptsize$\\pm$.0100}$^{\\circ}$ & .8572 & +.0028 & 1.3077{\\scriptsize$\\pm$.0385} \\\\"
    )
    assert _row(tex, "Baseline") == (
        "Baseline & .6000{\\scriptsize$\\pm$.0200}$^{\\dagger}$ & – & – & "
        ".6800{\\scriptsize$\\pm$.0200}$^{\\dagger}$ & – & – & .9615{\\scriptsize$\\pm$.0385} \\\\"
    )
    # Paper-only rows keep the paper's daggers; MLA* exists only in the paper.
    assert _row(tex, "MSES") == "MSES & – & .6156$^{\\dagger}$ & – & – & .6683$^{\\dagger}$ & – & – \\\\"
    assert _row(tex, "MLA*") == "MLA* & – & .7970 & – & – & – & – & – \\\\"
    # Below the best unimodal MAP (.7100) without being below its accuracy (.6200).
    assert _row(tex, "IGM w/o SAM \\& GM").split(" & ")[4].endswith("$^{\\dagger}$")
    assert "$^{\\dagger}$" not in _row(tex, "IGM w/o SAM \\& GM").split(" & ")[1]


def test_table1_paper_layout_and_macro_f1(reports: Path) -> None:
    tex = (reports / "main" / "table1.tex").read_text()
    assert "\\multicolumn{3}{c}{CREMA-D} & \\multicolumn{3}{c}{Sarcasm}" in tex
    assert " & Acc & MAP & Imb. (Audio) & Acc & Mac-F1 & Imb. (Image) \\\\" in tex
    # Sarcasm: two seeds; IGM .8500 (best) vs Baseline .8400 with constant differences -> p = 0 -> "**".
    assert _row(tex, "IGM").endswith(
        "& \\textbf{.8500}{\\scriptsize$\\pm$.0141}$^{**}$ & \\textbf{.8400}{\\scriptsize$\\pm$.0141}$^{**}$ & "
        ".9155{\\scriptsize$\\pm$.0199} \\\\"
    )
    md = (reports / "main" / "table1.md").read_text()
    assert "| IGM | **.8205** ± .0100\\* | **.9100** ± .0100\\*\\* | 1.3856 ± .0192 |" in md


def test_selection_rule_changes_numbers_and_caption(tmp_path: Path) -> None:
    tables = {t.key: t for t in build_tables(FIX / "main" / "main.csv", rule="best_test")}
    t = tables["table1_crema_d"]
    assert "best test score" in t.caption and "rule best_test" in t.caption
    igm = dict(t.rows)["IGM"]
    assert igm[0].value == pytest.approx(0.8305)  # best_test = best_val + .01 in the fixture
    with pytest.raises(ValueError, match="unknown selection rule"):
        build_tables(FIX / "main" / "main.csv", rule="best")


# -- Tables 2-4, Figure 3 and 5 tables ----------------------------------------------------------------------------
def test_table2_ablation_percent_and_checkmarks(reports: Path) -> None:
    tex = (reports / "main" / "table2_crema_d.tex").read_text()
    assert _row(tex, "IGM") == (
        "IGM & $\\checkmark$ & $\\checkmark$ & \\textbf{72.05\\%}{\\scriptsize$\\pm$1.00} & 61.16\\% & +10.89 & "
        "\\textbf{62.05\\%}{\\scriptsize$\\pm$1.00} & 67.82\\% & $-$5.77 & "
        "\\textbf{82.05\\%}{\\scriptsize$\\pm$1.00} & 81.05\\% & +1.00 \\\\"
    )
    assert _row(tex, "IGM w/o SAM \\& GM").startswith("IGM w/o SAM \\& GM & $\\times$ & $\\times$ & 55.00\\%")


def test_table3_stages_from_history(reports: Path) -> None:
    md = (reports / "main" / "table3_crema_d.md").read_text()
    header = md.splitlines()[2]
    assert "Initial ours" in header and "Out2 Video ours" in header and "Out2 Video paper" in header
    tables = {t.key: t for t in build_tables(FIX / "main" / "main.csv")}
    t = tables["table3_crema_d"]
    cols = [" ".join(x for x in c if x) for c in t.columns]
    igm = dict(t.rows)["IGM"]
    # Stage 3 (Out2 Video): 0.8 + 0.01 * seed over seeds 0-2 -> .8100; paper .8105.
    i = cols.index("Out2 Video ours")
    assert igm[i].value == pytest.approx(0.81) and igm[i + 1].value == pytest.approx(0.8105)
    assert igm[i + 2].number() == "-.0005"
    no_a = dict(t.rows)["w/o a-GM"]
    assert no_a[cols.index("Out1 Audio ours")].value == pytest.approx(0.49)
    assert igm[cols.index("Initial ours")].value == pytest.approx(0.03)


def test_table4_scope_and_fig3_grids(reports: Path) -> None:
    t4 = (reports / "sweeps" / "table4_crema_d.md").read_text()
    assert "| 30% | **83.50%** ± 0.71 | 82.97% | +0.53 |" in t4
    assert "| 0% | 73.50% ± 0.71 | 73.42% | +0.08 |" in t4  # mie_no_gm stands for 0%
    assert "| head (default) | <u>81.50%</u> ± 0.71 | 81.05% | +0.45 |" in t4
    tau = (reports / "sensitivity" / "fig3_tau_crema_d.md").read_text()
    assert "| 0.4 | **.8150** ± .0071 | .8105 | +.0045 |" in tau
    assert "| 100 | .7700 | .7896 | -.0196 |" in tau
    rho = (reports / "sensitivity" / "fig3_rho_crema_d.md").read_text()
    assert "| 1e-08 | <u>.8000</u> | .8052 | -.0052 |" in rho
    assert "1.3" not in rho  # the tau grid's runs are not in the rho table
    # A sweep CSV (several configurations per method and seed) gets no Table 1.
    assert not (reports / "sweeps" / "table1.tex").exists()


def test_fig5_tables(reports: Path) -> None:
    a = (reports / "main" / "fig5a_crema_d.md").read_text()
    assert "| IGM | 40.0 ± 0.0 | 45.0 | -5.0 | 30.0 ± 0.0 | 30.7 | -0.7 | 20.0 ± 0.0 | 23.8 | -3.8 |" in a
    assert "| IGM w/o SAM | 80.0 ± 0.0 | 109.2 | -29.2 |" in a
    b = (reports / "sweeps" / "fig5b_twitter2015.md").read_text()
    assert "| CLIP | .7200 | .7252 | -.0052 |" in b and "| CLIP+IGM | **.7400** | .7358 | +.0042 |" in b
    c = pd.read_csv(FIX / "main" / "main.csv").query("label == 'mie' and status == 'ok'")
    minutes = c["wall_time_s"].mean() / 60
    assert f"| IGM | {minutes:.1f} ± 0.0 | 327.0 |" in (reports / "main" / "fig5c_crema_d.md").read_text()


# -- documents and figures -----------------------------------------------------------------------------------------
def test_report_lists_failed_runs_and_every_table(reports: Path) -> None:
    md = (reports / "main" / "report.md").read_text()
    assert "NonFiniteLossError" in md and "pmr-crema_d" in md
    tex = (reports / "main" / "report.tex").read_text()
    for key in ("table1", "table1_crema_d", "table2_crema_d", "table3_crema_d", "fig5a_crema_d"):
        assert f"\\input{{{key}}}" in tex
    assert "\\includegraphics[width=0.9\\linewidth]{figures/curves_crema_d.pdf}" in tex


EXPECTED_FIGURES = {
    "main": ["curves_crema_d", "stages_crema_d", "fig5a_singular_values_crema_d", "fig5c_time_crema_d"],
    "sweeps": ["fig5b_clip_twitter2015"],
    "sensitivity": ["fig3_sensitivity_crema_d"],
}


def test_figures_are_valid_png_and_pdf(reports: Path) -> None:
    for suite, names in EXPECTED_FIGURES.items():
        for name in names:
            png = (reports / suite / "figures" / f"{name}.png").read_bytes()
            pdf = (reports / suite / "figures" / f"{name}.pdf").read_bytes()
            assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000, name
            assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF") and len(pdf) > 2000, name
    assert not (reports / "main" / "figures" / "curves_sarcasm.png").exists()  # its runs have no history.json


@pytest.mark.slow
def test_latex_compiles(reports: Path) -> None:
    engine = shutil.which("pdflatex")
    if engine is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdflatex is missing in CI: .ci/run installs texlive-latex-base and texlive-latex-recommended")
        pytest.skip("pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    for suite in ("main", "sweeps"):
        proc = subprocess.run(
            [engine, "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
            cwd=reports / suite,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout[-3000:]
        pdf = (reports / suite / "report.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and len(pdf) > 10000


# -- the command line -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_report_only_renders_without_torch(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(FIX / "sweeps" / "sweeps.csv", results / "sweeps.csv")
    shutil.copy(FIX / "sensitivity" / "sensitivity.csv", results / "sensitivity.csv")
    code = (
        "import sys, run_all\n"
        f"rc = run_all.main(['--report-only', '--results', {str(results)!r}, '--reports', {str(tmp_path / 'rep')!r}])\n"
        "assert 'torch' not in sys.modules, 'report-only imported torch'\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "rep" / "sweeps" / "table4_crema_d.tex").exists()
    assert (tmp_path / "rep" / "sensitivity" / "figures" / "fig3_sensitivity_crema_d.pdf").exists()
    assert "Summary (Twitter2015)" in proc.stdout  # the rich table in the terminal

    missing = subprocess.run(
        [sys.executable, "run_all.py", "--report-only", "--suite", "nope", "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "nope.csv does not exist" in missing.stderr


def test_empty_csv_gives_a_report_saying_so(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    written = render_report(tmp_path / "empty.csv", tmp_path / "rep", "empty")
    assert "No finished runs yet." in written[0].read_text()
    assert "No finished runs yet." in written[1].read_text()


def test_csv_written_by_the_trainer(tmp_path: Path) -> None:
    """real_quick/ is a run_all.py output (joint + both unimodal runs, 1 epoch): the schema the trainer writes."""
    csv = FIX / "real_quick" / "quick.csv"
    raw = pd.read_csv(csv).set_index("label")
    tables = {t.key: t for t in build_tables(csv)}
    t1 = tables["table1"]
    assert [label for label, _ in t1.rows] == ["Unimodal (audio)", "Unimodal (visual)", "Baseline"]
    joint = dict(t1.rows)["Baseline"]
    assert joint[0].value == pytest.approx(raw.loc["joint", "test_acc[best_val]"])
    assert joint[1].value == pytest.approx(raw.loc["joint", "test_map[best_val]"])
    summary = tables["summary_av_digits"]
    cols = [c[1] for c in summary.columns]
    assert cols[:4] == ["Acc", "MAP", "Acc audio", "Acc visual"]
    assert dict(summary.rows)["Unimodal (audio)"][cols.index("Acc visual")].number() == "–"
    written = render_report(csv, tmp_path, "quick")
    names = {p.name for p in written}
    assert {"curves_av_digits.png", "curves_av_digits.pdf", "table1.tex", "summary_av_digits.md"} <= names
