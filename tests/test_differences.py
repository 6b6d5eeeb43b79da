"""docs/differences.md is generated from the docs/methods pages and must be up to date (#15)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_differences", ROOT / "scripts" / "make_differences.py")
make_differences = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_differences)


def test_generated_differences_are_up_to_date() -> None:
    assert make_differences.main(["--check"]) == 0, "run: python scripts/make_differences.py"


def test_every_row_comes_from_its_page_with_a_link() -> None:
    text = (ROOT / "docs" / "differences.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    pages = sorted((ROOT / "docs" / "methods").glob("*.md"))
    assert len(rows) == sum(len(make_differences.page_rows(p)) for p in pages) > 90
    assert "| [mla](methods/mla.md) | gradient projection |" in text


def test_a_section_without_the_table_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "x.md"
    page.write_text("# X\n\n## Code versus paper\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    with pytest.raises(ValueError, match="has no table with the header"):
        make_differences.page_rows(page)
