"""Inputs of the reports: result CSVs, run histories, the paper's numbers (results/paper/*.csv), display names.

Nothing here imports torch: reports are rendered from files only.
"""

from __future__ import annotations

import hashlib
import math
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

# Registry label -> the name the paper's tables use.
DISPLAY = {
    "joint": "Baseline",
    "gblending": "OGR-GB",
    "ogm": "OGM",
    "ogm_ge": "OGM-GE",
    "agm": "AGM",
    "pmr": "PMR",
    "mla": "MLA",
    "mla*": "MLA*",
    "reconboost": "ReconBoost",
    "mmpareto": "MMPareto",
    "mses": "MSES",
    "mslr": "MSLR",
    "domfn": "DOMFN",
    "smv": "SMV",
    "msam": "M-SAM",
    "mie": "IGM",
    "mie_no_sam": "IGM w/o SAM",
    "mie_no_gm": "IGM w/o GM",
    "mie_plain": "IGM w/o SAM & GM",
    "mie_no_a_gm": "w/o a-GM",
    "mie_no_v_gm": "w/o v-GM",
}
# Row order of the paper's Table 1 (labels not listed follow, alphabetically, before the MIE family).
PAPER_ORDER = [
    "joint",
    "gblending",
    "ogm",
    "ogm_ge",
    "domfn",
    "mses",
    "pmr",
    "agm",
    "mslr",
    "reconboost",
    "smv",
    "mmpareto",
    "msam",
    "mla*",
    "mla",
    "mie_plain",
    "mie_no_gm",
    "mie_no_a_gm",
    "mie_no_v_gm",
    "mie_no_sam",
    "mie",
]
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


def display(label: str) -> str:
    """The paper's name for a row label: ``unimodal_audio`` -> ``Unimodal (audio)``, ``mie`` -> ``IGM``."""
    if label.startswith("unimodal_"):
        return f"Unimodal ({label[len('unimodal_') :]})"
    return DISPLAY.get(label, label)


def dataset_name(name: str) -> str:
    return DATASET_DISPLAY.get(name, name)


def modality_name(m: str) -> str:
    return MODALITY_DISPLAY.get(m, m.capitalize())


def is_unimodal(label: str) -> bool:
    return label == "unimodal" or label.startswith("unimodal_")


def is_proposed(label: str) -> bool:
    """The MIE/IGM family (the rows tested for significance against the best baseline)."""
    return label == "mie" or label.startswith("mie_")


def order_labels(labels: list[str]) -> list[str]:
    """Unimodal rows first, then the paper's order; unknown labels before the MIE family."""
    labels = list(dict.fromkeys(labels))
    uni = sorted(x for x in labels if is_unimodal(x))
    known = [x for x in PAPER_ORDER if x in labels and not is_proposed(x)]
    mie_family = [x for x in PAPER_ORDER if x in labels and is_proposed(x)]
    rest = sorted(x for x in labels if x not in uni and x not in known and x not in mie_family)
    rest_mie = [x for x in rest if is_proposed(x)]
    rest = [x for x in rest if not is_proposed(x)]
    return uni + known + rest + rest_mie + mie_family


def order_datasets(names: list[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    return [d for d in DATASET_ORDER if d in names] + sorted(d for d in names if d not in DATASET_ORDER)


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
