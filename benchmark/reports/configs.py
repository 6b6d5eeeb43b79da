"""Which runs make up a row: one configuration per method (the suite's own), sweeps told apart, and the
name of what sets a configuration apart from the label's others."""

from __future__ import annotations

import pandas as pd

from benchmark.reports import data as D


def is_sweep(df: pd.DataFrame) -> bool:
    """Several configurations of the suite's own per (dataset, label): a sweep (a grid), whose runs must not be
    averaged per method."""
    own = df[df["suite_config"]] if "suite_config" in df else df
    if "config_id" in own:
        return bool((own.groupby(["dataset", "label"])["config_id"].nunique() > 1).any())
    return bool(own.duplicated(["dataset", "label", "seed"]).any())


def one_config(df: pd.DataFrame, by: tuple[str, ...] = ("dataset", "label")) -> tuple[pd.DataFrame, str]:
    """One configuration (``config``: config id and thread count) per ``by`` group, for tables with one row per
    method: the suite's own configuration, and among several the one with the most runs. Returns the rows and
    a caption sentence naming what was left out ("" if nothing)."""
    if df.empty or "config" not in df:
        return df, ""
    keep, dropped = [], 0
    for _, g in df.groupby(list(by), sort=False, dropna=False):
        if g["config"].nunique() > 1:
            own = g[g["suite_config"]] if "suite_config" in g and g["suite_config"].any() else g
            counts = own["config"].value_counts()
            best = min(counts.index, key=lambda c: (-counts[c], str(c)))
            dropped += int((g["config"] != best).sum())
            g = g[g["config"] == best]
        keep.append(g)
    if not dropped:
        return df, ""
    note = (
        f" Rows: the suite's own configuration (where a method ran with several, the one with most runs); "
        f"{dropped} run(s) of other configurations or thread counts are not averaged in (see the summary)."
    )
    return pd.concat(keep), note


def variants(df: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """``(dataset, label, config)`` -> what sets that configuration apart from the label's others, e.g.
    ``train.epochs=2`` or ``1 thread``; "" for the label's only configuration, or its only one of the suite's own
    (``suite_config``) when the others are not."""
    out: dict[tuple[str, str, str], str] = {}
    cols = [*D.config_columns(df), "torch_threads"]
    for (ds, label), g in df.groupby(["dataset", "label"], sort=False):
        first = g.drop_duplicates("config").set_index("config")
        own = set(g.loc[g["suite_config"], "config"]) if "suite_config" in g else set(first.index)
        if len(first) == 1:
            out[(ds, label, first.index[0])] = ""
            continue
        differ = [c for c in cols if c in first and first[c].astype(str).nunique() > 1]
        for cfg, r in first.iterrows():
            if len(own) == 1 and cfg in own:
                out[(ds, label, str(cfg))] = ""
                continue
            parts = []
            for c in differ[:3]:
                if c == "torch_threads":
                    parts.append(
                        f"{int(r[c])} thread{'s' if int(r[c]) != 1 else ''}" if D.finite(r[c]) else "threads ?"
                    )
                else:
                    parts.append(f"{c}={r[c]}")
            text = ", ".join(parts) + (", …" if len(differ) > 3 else "")
            out[(ds, label, str(cfg))] = text or f"config {cfg}"
    return out
