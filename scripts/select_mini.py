"""Select each method's point of the mini suite's tuning grid on the validation split (issue #13).

    python run_all.py --suite mini_tune --cluster local --workers 2     # the grid (benchmark/suites/mini.py)
    python scripts/select_mini.py                                     # choose, print, store the choice
    python scripts/select_mini.py --check                             # do the av_digits defaults match it?

For every method of ``TUNING_GRID``, each grid point's score is the mean over its runs (seeds, and both
modalities for ``unimodal``) of the validation metric at the best-validation epoch (``val_<select_metric>
[best_val]``); the test split is never read. The best point wins (ties: the first in grid order). The choice
is printed as the lines to put into the method's ``dataset_defaults["av_digits"]`` (with the grid as a
comment) and stored in ``--out`` (JSON: per method the chosen values, the grid, every point's score).
``--check`` compares the stored choice with the av_digits defaults the methods now have (exit 1 on a
mismatch). A method with missing grid points is reported and left out (``--partial`` selects among the
points it has).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmark.suites.mini import TUNING_GRID, grid_points  # noqa: E402

# The committed record of the choice the methods' av_digits defaults hold (with the grid's CSV beside it).
CHOICE = ROOT / "docs" / "results" / "mini_tune" / "mini_tune_choice.json"


def _matches(frame: pd.DataFrame, point: dict[str, Any]) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for key, value in point.items():
        if key not in frame:
            return pd.Series(False, index=frame.index)
        col = frame[key]
        if isinstance(value, float):
            mask &= col.astype(float).map(lambda x, v=value: math.isclose(x, v, rel_tol=1e-9))
        else:
            mask &= col.astype(str) == str(value)
    return mask


def validation_score(rows: pd.DataFrame) -> float | None:
    """Mean of each run's ``val_<select_metric>[best_val]`` (None without finished runs)."""
    values = []
    for _, r in rows.iterrows():
        metric = r.get("select_metric", "acc")
        v = r.get(f"val_{metric}[best_val]")
        if v is not None and not pd.isna(v):
            values.append(float(v))
    return sum(values) / len(values) if values else None


def select(frame: pd.DataFrame, grid: dict[str, dict[str, tuple]] | None = None, partial: bool = False) -> dict:
    """Per method of ``grid`` (default ``TUNING_GRID``): chosen point, every point's score, missing points."""
    grid = TUNING_GRID if grid is None else grid
    if "status" in frame:
        frame = frame[frame["status"] == "ok"]
    out: dict[str, dict[str, Any]] = {}
    for method, axes in grid.items():
        keys = list(axes)
        points = [dict(zip(keys, vals)) for vals in _product(axes)]
        sub = frame[frame["method"] == method] if "method" in frame else frame.iloc[0:0]
        scores, missing = [], []
        for point in points:
            score = validation_score(sub[_matches(sub, point)])
            scores.append({"point": point, "val": score})
            if score is None:
                missing.append(point)
        scored = [s for s in scores if s["val"] is not None]
        chosen = None
        if scored and (partial or not missing):
            chosen = max(scored, key=lambda s: s["val"])["point"]  # max keeps the first of equal scores
        out[method] = {"grid": {k: list(v) for k, v in axes.items()}, "scores": scores, "missing": missing}
        out[method]["chosen"] = chosen
    return out


def _product(axes: dict[str, tuple]) -> list[tuple]:
    from itertools import product

    return list(product(*axes.values()))


def snippet(method: str, result: dict) -> str:
    """The lines for the method's ``dataset_defaults["av_digits"]``, the grid as a comment."""
    grid = " x ".join(f"{k} in {tuple(v)}" for k, v in result["grid"].items())
    lines = [f"# mini_tune (scripts/select_mini.py, validation accuracy): {grid}"]
    lines += [f"{json.dumps(k)}: {v!r}," for k, v in result["chosen"].items()]
    return "\n".join(lines)


def current_defaults(method: str, keys: list[str]) -> dict[str, Any]:
    """The values ``keys`` take for ``method`` on av_digits with no overrides (imports the methods: torch)."""
    from benchmark.config import build_config

    cfg = build_config(method, "av_digits")
    out = {}
    for key in keys:
        section, name = key.split(".", 1)
        out[key] = getattr(cfg.section(section), name)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def check(choice: dict) -> list[str]:
    """Methods whose av_digits defaults differ from the stored choice (one line each)."""
    problems = []
    for method, result in choice.items():
        if not result.get("chosen"):
            problems.append(f"{method}: no choice stored (grid incomplete)")
            continue
        now = current_defaults(method, list(result["chosen"]))
        diff = {k: (now[k], v) for k, v in result["chosen"].items() if not _same(now[k], v)}
        if diff:
            problems.append(f"{method}: " + ", ".join(f"{k} is {a!r}, chosen {b!r}" for k, (a, b) in diff.items()))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=ROOT / "results" / "mini_tune.csv")
    parser.add_argument("--out", type=Path, default=CHOICE)
    parser.add_argument("--partial", action="store_true", help="select among the grid points that finished")
    parser.add_argument("--check", action="store_true", help="compare the stored choice with the defaults")
    args = parser.parse_args(argv)

    if args.check:
        if not args.out.exists():
            print(f"error: {args.out} does not exist; run scripts/select_mini.py first", file=sys.stderr)
            return 2
        problems = check(json.loads(args.out.read_text()))
        for p in problems:
            print(p)
        print("av_digits defaults match the stored choice" if not problems else f"{len(problems)} mismatches")
        return 1 if problems else 0

    if not args.csv.exists():
        print(f"error: {args.csv} does not exist; run: python run_all.py --suite mini_tune", file=sys.stderr)
        return 2
    from benchmark.registry import METHODS

    result = select(pd.read_csv(args.csv), partial=args.partial)
    for method, r in result.items():
        module = METHODS.entry(method).module.replace(".", "/") + ".py"
        print(f"== {method} ({module}, dataset_defaults['av_digits'])")
        for s in r["scores"]:
            mark = " <- chosen" if s["point"] == r["chosen"] else ""
            val = "missing" if s["val"] is None else f"{s['val']:.4f}"
            print(f"   {s['point']}  val {val}{mark}")
        if r["chosen"] is None:
            print(f"   no choice: {len(r['missing'])} of {len(r['scores'])} grid points missing (--partial to select)")
        else:
            print("   " + snippet(method, r).replace("\n", "\n   "))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True))
    print(f"choice stored in {args.out}")
    return 0


__all__ = ["check", "grid_points", "select", "snippet", "validation_score"]

if __name__ == "__main__":
    sys.exit(main())
