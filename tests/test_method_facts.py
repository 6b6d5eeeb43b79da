"""What the tables show for a method comes from its class (``display``, ``paper_row``, ``proposed``, ``ablation``),
through the result rows: a new method needs one file to appear in Table 1, and old CSVs still render."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import train_briefly

from benchmark.registry import METHODS, register_method, table1_methods
from benchmark.reports import data as D
from benchmark.reports import paper_tables as T
from methods.joint import Joint

FIX = Path(__file__).resolve().parent / "fixtures" / "reports"


@pytest.fixture
def new_method():
    """A method registered for one test only (a new file in methods/ would do the same)."""

    @register_method
    class NewNet(Joint):
        """A method the reports have never heard of."""

        name = "newnet_test"
        display = "NewNet (ours)"
        paper_row = 12.5  # between MMPareto/M-SAM and MLA

    yield NewNet
    METHODS._entries.pop("newnet_test")


def test_new_method_appears_in_table1_and_the_main_suite(new_method, tmp_path: Path) -> None:
    assert table1_methods().index("newnet_test") == table1_methods().index("mla") - 1
    row = train_briefly("newnet_test", epochs=1, **{"train.max_steps_per_epoch": 1})
    assert (row["display"], row["paper_row"], row["proposed"]) == ("NewNet (ours)", 12.5, False)
    main = pd.read_csv(FIX / "main" / "main.csv")
    # its runs on the fixture's datasets: MLA's numbers, the row's own label, method and facts
    new = main[main["label"] == "mla"].assign(**{k: row[k] for k in ("label", "method", *D.FACT_COLUMNS)})
    new["run_id"] = new["run_id"].str.replace("mla", "newnet_test")
    csv = tmp_path / "main.csv"
    pd.concat([main, new]).to_csv(csv, index=False)
    df = D.load_results(csv)
    t1 = T.table1(df, "best_val")[0]
    names = [label for label, _ in t1.rows]
    assert names.index("NewNet (ours)") == names.index("MLA") - 1
    # not proposed: no significance test against it, and it is a baseline candidate instead
    assert not D.is_proposed("newnet_test")


def test_csv_without_the_fact_columns_renders_the_same(tmp_path: Path) -> None:
    """Rows written before the columns existed: the facts are asked of the method classes (needs torch)."""
    main = pd.read_csv(FIX / "main" / "main.csv")
    with_facts = D.load_results(FIX / "main" / "main.csv")
    expected = [(label, [c.number() for c in cells]) for label, cells in T.table1(with_facts, "best_val")[0].rows]
    old = main.drop(columns=list(D.FACT_COLUMNS)).assign(**{"method.modality": main["label"].str[len("unimodal_") :]})
    old.loc[~old["label"].str.startswith("unimodal_"), "method.modality"] = ""
    csv = tmp_path / "old.csv"
    old.to_csv(csv, index=False)
    saved = dict(D._FACTS)
    D._FACTS.clear()
    try:
        got = [
            (label, [c.number() for c in cells]) for label, cells in T.table1(D.load_results(csv), "best_val")[0].rows
        ]
    finally:
        D._FACTS.update(saved)
    assert got == expected
    assert [g[0] for g in got][:3] == ["Unimodal (audio)", "Unimodal (image)", "Unimodal (text)"]


def test_paper_rows_follow_the_papers_table1() -> None:
    """The registered methods' Table-1 positions keep the order of the paper's Table 1 (results/paper/table1.csv)."""
    paper_order = [x for x in dict.fromkeys(D.paper("table1")["label"]) if x in METHODS and not x.startswith("uni")]
    ours = [m for m in table1_methods() if m in paper_order]
    assert ours == paper_order
    assert {METHODS.get(m).display for m in paper_order} <= set(D.paper("table1")["paper_name"])


def _learn(labels: list[str]) -> None:
    D.learn_facts(pd.DataFrame({"label": labels, "method": labels}))


def test_paper_only_rows_sit_where_the_paper_has_them() -> None:
    """MLA* (copied from the MLA paper, no method of ours) is shown and placed from the paper's own CSV."""
    _learn(["mie", "mla", "joint", "mmpareto"])
    assert D.display("mla*") == "MLA*"
    order = D.order_labels(["mie", "mla", "mla*", "joint", "unimodal_audio", "mmpareto"])
    assert order == ["unimodal_audio", "joint", "mmpareto", "mla*", "mla", "mie"]


def test_ablation_rows_and_marks_come_from_the_classes() -> None:
    labels = ["mie", "mie_no_sam", "mie_no_a_gm", "mie_plain", "mie_no_gm", "joint"]
    _learn(labels)
    assert T.ablation_order(labels) == ["mie_plain", "mie_no_gm", "mie_no_sam", "mie"]
    assert dict(D.facts("mie_no_gm").ablation) == {"SAM": True, "GM": False}
