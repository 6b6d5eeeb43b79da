"""Inputs of the reports: result CSVs, run histories, the paper's numbers (results/paper/*.csv), and what each
row label shows as (display name, Table-1 position, proposed or not), read from the result rows.

Nothing here imports torch: reports are rendered from files only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

PAPER_DIR = Path(__file__).resolve().parents[2] / "results" / "paper"

RULES = ("best_val", "last", "best_test")
RULE_NAMES = {
    "best_val": "the epoch with the best validation score",
    "last": "the last epoch",
    "best_test": "the epoch with the best test score (the official code's protocol; optimistic)",
}

DATASET_ORDER = ["crema_d", "kinetics_sounds", "twitter2015", "sarcasm", "nvgesture"]
DATASET_DISPLAY = {
    "crema_d": "CREMA-D",
    "kinetics_sounds": "Kinetics-Sounds",
    "twitter2015": "Twitter2015",
    "sarcasm": "Sarcasm",
    "nvgesture": "NVGesture",
    "av_digits": "AV-Digits",
}
METRIC_DISPLAY = {"acc": "Acc", "map": "MAP", "macro_f1": "Mac-F1"}
MODALITY_DISPLAY = {"visual": "Video", "rgb": "RGB", "flow": "OF", "depth": "Depth"}


def dataset_name(name: str) -> str:
    return DATASET_DISPLAY.get(name, name)


def modality_name(m: str) -> str:
    return MODALITY_DISPLAY.get(m, m.capitalize())


def is_unimodal(label: str) -> bool:
    return label == "unimodal" or label.startswith("unimodal_")


# -- what each row label shows as: written by the methods, read from the result rows ------------------------------
FACT_COLUMNS = ("display", "paper_row", "proposed", "ablation")


@dataclass(frozen=True)
class Facts:
    """What the reports show for a row label (the method class's ``display``/``paper_row``/``proposed``/
    ``ablation``, written into every result row by the trainer)."""

    display: str
    paper_row: float | None = None
    proposed: bool = False
    ablation: tuple[tuple[str, bool], ...] = ()


_FACTS: dict[str, Facts] = {}


def _parse_ablation(text: Any) -> tuple[tuple[str, bool], ...]:
    if not isinstance(text, str) or not text.strip():
        return ()
    out = []
    for part in text.split(","):
        name, _, on = part.partition(":")
        out.append((name.strip(), on.strip() not in ("0", "", "False", "false")))
    return tuple(out)


def learn_facts(df: pd.DataFrame) -> None:
    """Remember the facts of every label in ``df`` (from its fact columns; labels whose rows predate those
    columns are looked up in the method registry, which imports torch)."""
    if "label" not in df or df.empty:
        return
    missing: dict[str, pd.Series] = {}
    for label, g in df.groupby("label", sort=False):
        label = str(label)
        if "display" in g and g["display"].notna().any():
            r = g[g["display"].notna()].iloc[0]
            row = r.get("paper_row")
            _FACTS[label] = Facts(
                display=str(r["display"]),
                paper_row=float(row) if finite(row) else None,
                proposed=_flag(r.get("proposed", False)),
                ablation=_parse_ablation(r.get("ablation")),
            )
        elif label not in _FACTS:
            missing[label] = g.iloc[0]
    if missing:
        _FACTS.update(registry_facts(missing))


def registry_facts(rows: dict[str, pd.Series]) -> dict[str, Facts]:
    """Facts of labels from result rows written before the rows carried them: asked of the method classes."""
    try:
        from benchmark.registry import METHODS
    except ImportError as e:  # pragma: no cover - torch missing
        raise RuntimeError(
            f"the result rows of {', '.join(sorted(rows))} predate the columns {', '.join(FACT_COLUMNS)}; reading "
            f"them from the method registry needs torch ({e}). Install the suite's dependencies, or re-run those "
            "runs with the current code."
        ) from e
    out = {}
    for label, r in rows.items():
        method = str(r.get("method", label))
        if method not in METHODS:
            out[label] = Facts(display=label)
            continue
        cls = METHODS.get(method)
        cfg = cls.Config()
        for key in vars(cfg):
            value = r.get(f"method.{key}")
            if isinstance(getattr(cfg, key), str) and isinstance(value, str):
                setattr(cfg, key, value)
        f = cls.row_facts(cfg)
        out[label] = Facts(f["display"], f["paper_row"], bool(f["proposed"]), _parse_ablation(f["ablation"]))
    return out


def _paper_facts() -> dict[str, Facts]:
    """Rows the paper's Table 1 has that no result row named: its name for them, and a position between the
    known rows around them in the paper's order (``results/paper/table1.csv`` lists its rows in order)."""
    ref = paper("table1")
    seq = [str(x) for x in dict.fromkeys(ref["label"]) if not is_unimodal(str(x))]
    names = dict(zip(ref["label"].astype(str), ref["paper_name"].astype(str)))
    known = [_FACTS[x].paper_row if x in _FACTS else None for x in seq]
    out, i = {}, 0
    while i < len(seq):
        if known[i] is not None or seq[i] in _FACTS:
            i += 1
            continue
        j = i
        while j < len(seq) and known[j] is None and seq[j] not in _FACTS:
            j += 1
        before = next((known[k] for k in range(i - 1, -1, -1) if known[k] is not None), 0.0)
        after = next((known[k] for k in range(j, len(seq)) if known[k] is not None), before + j - i + 1)
        for n, k in enumerate(range(i, j), start=1):
            out[seq[k]] = Facts(display=names[seq[k]], paper_row=before + (after - before) * n / (j - i + 1))
        i = j
    return out


def facts(label: str) -> Facts:
    """The facts of a row label: learnt from result rows, else a row of the paper's Table 1, else the label."""
    if label in _FACTS:
        return _FACTS[label]
    paper_rows = _paper_facts()
    return paper_rows.get(label, Facts(display=label))


def display(label: str) -> str:
    """The paper's name for a row label, as its method declares it (``mie`` -> ``IGM``)."""
    return facts(label).display


def is_proposed(label: str) -> bool:
    """The proposed method's rows (tested for significance against the best baseline)."""
    return facts(label).proposed


def order_labels(labels: list[str]) -> list[str]:
    """Unimodal rows first, then the Table-1 order (``paper_row``); rows without one follow their group
    alphabetically; the proposed method's rows come last."""
    labels = list(dict.fromkeys(labels))

    def key(x: str) -> tuple[int, float, str]:
        f = facts(x)
        if is_unimodal(x):
            return (0, 0.0, x)
        group = (4 if f.paper_row is not None else 3) if f.proposed else (1 if f.paper_row is not None else 2)
        return (group, f.paper_row if f.paper_row is not None else 0.0, x)

    return sorted(labels, key=key)


def order_datasets(names: list[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    return [d for d in DATASET_ORDER if d in names] + sorted(d for d in names if d not in DATASET_ORDER)


def by_dataset(frame: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """Each dataset of ``frame`` in the paper's order (:func:`order_datasets`) with its rows."""
    for ds in order_datasets(frame["dataset"].tolist()):
        yield ds, frame[frame["dataset"] == ds]


def read(csv_path: str | Path) -> pd.DataFrame:
    try:
        return pd.read_csv(csv_path)
    except pd.errors.EmptyDataError:  # a suite whose runs have not written anything yet
        return pd.DataFrame()


# Columns of a row that describe where a run executed, not what it computed (``NOT_IDENTITY`` fields).
EXECUTION_COLUMNS = {
    "train.device",
    "train.num_workers",
    "train.save_model",
    "train.checkpoint",
    "data.root",
    "data.cache",
}
CONFIG_PREFIXES = ("train.", "model.", "method.", "data.")


def config_columns(df: pd.DataFrame) -> list[str]:
    """The columns that make up a run's configuration (its identity without the seed)."""
    return [c for c in df.columns if c.startswith(CONFIG_PREFIXES) and c not in EXECUTION_COLUMNS]


def _flag(value: Any) -> bool:
    return str(value).strip().lower() not in {"false", "0", "no"}


def load_results(csv_path: str | Path) -> pd.DataFrame:
    """The finished runs of a result CSV (failed runs dropped); ``label`` falls back to ``method``.

    Adds ``config``: the configuration a row ran with, ``config_id`` (identity without the seed; recomputed
    from the configuration columns for rows written before it existed) plus ``torch_threads`` (CPU results
    depend on it). Rows are averaged over seeds only within one ``config``. ``suite_config`` (True where absent)
    marks the suite's own configuration.
    """
    df = read(csv_path)
    if "status" in df:
        df = df[df["status"] == "ok"]
    if "label" not in df and "method" in df:
        df = df.assign(label=df["method"])
    learn_facts(df)
    if "dataset" not in df or "seed" not in df:
        return df.iloc[0:0]
    df = df.reset_index(drop=True)
    if df.empty:
        return df.assign(config_id=[], config=[], suite_config=[])
    cols = ["method", "dataset", *config_columns(df)]
    cols = [c for c in cols if c in df]
    fallback = df[cols].apply(lambda r: "~" + hashlib.sha1("\x1f".join(map(str, r)).encode()).hexdigest()[:9], axis=1)
    ids = df["config_id"].where(df["config_id"].notna(), fallback) if "config_id" in df else fallback
    threads = df["torch_threads"] if "torch_threads" in df else pd.Series([None] * len(df), index=df.index)
    df["config_id"] = ids.astype(str)
    df["config"] = [f"{c}/{int(t)}t" if finite(t) else str(c) for c, t in zip(df["config_id"], threads)]
    df["suite_config"] = df["suite_config"].map(_flag) if "suite_config" in df else True
    return df


def failed_runs(csv_path: str | Path) -> pd.DataFrame:
    df = read(csv_path)
    return df[df["status"] == "failed"] if "status" in df else df.iloc[0:0]


def paper_metric(df: pd.DataFrame, dataset: str) -> str:
    """The dataset's second Table-1 metric ("map" or "macro_f1") as the CSV's ``paper_metric`` column says."""
    if "paper_metric" in df:
        values = df.loc[df["dataset"] == dataset, "paper_metric"].dropna().unique()
        if len(values):
            return str(values[0])
    return "map" if dataset in ("crema_d", "kinetics_sounds", "av_digits") else "macro_f1"


@lru_cache(maxsize=16)
def _paper_cached(name: str, root: str) -> pd.DataFrame:
    path = Path(root) / f"{name}.csv"
    if not path.exists():
        raise FileNotFoundError(f"the paper's numbers {path} are missing; restore results/paper/ from git")
    return pd.read_csv(path, dtype={"gm_scope": str})


def paper(name: str, root: Path | None = None) -> pd.DataFrame:
    """One of the paper's tables as data (``results/paper/<name>.csv``)."""
    return _paper_cached(name, str(root or PAPER_DIR)).copy()


class Histories:
    """Lazy reader of ``<results>/runs/<run_id>/history.json`` (missing files read as None)."""

    def __init__(self, results_root: Path) -> None:
        self.root = Path(results_root)
        self._cache: dict[str, dict[str, Any] | None] = {}

    def get(self, run_id: str) -> dict[str, Any] | None:
        if run_id not in self._cache:
            from benchmark.results import read_json_record

            path = self.root / "runs" / str(run_id) / "history.json"
            self._cache[run_id] = read_json_record(path, "history file")
        return self._cache[run_id]

    def artifacts(self, run_id: str) -> dict[str, Any]:
        h = self.get(run_id)
        return (h or {}).get("artifacts") or {}


def finite(x: Any) -> bool:
    try:
        return not math.isnan(float(x))
    except (TypeError, ValueError):
        return False
