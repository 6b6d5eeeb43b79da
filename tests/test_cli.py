"""run_all.py as a user calls it: listing, dry runs, clear errors, a tiny real run with its report."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_all.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_list_shows_every_registry_with_descriptions():
    proc = run_cli("--list")
    assert proc.returncode == 0, proc.stderr
    for word in (
        "methods",
        "datasets",
        "backbones",
        "suites",
        "joint",
        "unimodal",
        "av_digits",
        "resnet18_audio",
        "clip_text",
        "quick",
    ):
        assert word in proc.stdout


def test_unknown_method_stops_with_the_choices(tmp_path):
    proc = run_cli("--methods", "jiont", "--results", str(tmp_path))
    assert proc.returncode == 2
    assert "unknown method 'jiont'" in proc.stderr and "Did you mean joint" in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_malformed_override_stops_before_training(tmp_path):
    proc = run_cli("--methods", "joint", "--set", "train.epochs=two", "--results", str(tmp_path))
    assert proc.returncode == 2 and "train.epochs" in proc.stderr and "integer" in proc.stderr
    proc = run_cli("--set", "nonsense", "--results", str(tmp_path))
    assert proc.returncode == 2 and "key=value" in proc.stderr


def test_dry_run_lists_the_plan_with_unimodal_expanded(tmp_path):
    proc = run_cli("--methods", "joint,unimodal", "--seeds", "0,1", "--dry-run", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "6 runs, 0 done, 0 failed, 0 running, 6 to do" in proc.stdout
    assert proc.stdout.count("todo") == 6


@pytest.mark.slow
def test_tiny_run_writes_csv_and_reports_then_skips(tmp_path):
    args = [
        "--methods",
        "joint",
        "--set",
        "train.epochs=1",
        "--set",
        "train.max_steps_per_epoch=2",
        "--results",
        str(tmp_path / "res"),
        "--reports",
        str(tmp_path / "rep"),
        "--no-progress",
    ]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(tmp_path / "res" / "quick.csv")
    assert len(df) == 1 and df["status"].iloc[0] == "ok"
    md = (tmp_path / "rep" / "quick" / "summary_av_digits.md").read_text()
    tex = (tmp_path / "rep" / "quick" / "summary_av_digits.tex").read_text()
    assert "| Baseline |" in md  # joint training is the paper's "Baseline" row
    assert "\\toprule" in tex and "\\bottomrule" in tex and "Baseline" in tex
    again = run_cli(*args)
    assert "already ok, skipped" in again.stdout
    assert len(pd.read_csv(tmp_path / "res" / "quick.csv")) == 1
