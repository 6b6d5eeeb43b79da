"""``python -m datasets prepare NAME --root RAW --out CACHE`` and ``python -m datasets bench NAME ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from benchmark.registry import DATASETS


def main(argv: Sequence[str] | None = None, dataset: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datasets",
        description="Prepare a dataset's packed cache from its raw release, or benchmark the cache.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd, text in (("prepare", "raw release -> packed cache (resumable)"), ("bench", "cache vs raw loader speed")):
        p = sub.add_parser(cmd, help=text)
        if dataset is None:
            p.add_argument("name", choices=[n for n in DATASETS.names() if hasattr(DATASETS.get(n), "prepare")])
        p.add_argument("--root", required=True, help="directory of the raw release (only read)")
        p.add_argument("--out", default="", help="cache directory (default: $MMB_DATA_CACHE/NAME)")
        p.add_argument("--no-progress", action="store_true")
        if cmd == "prepare":
            p.add_argument(
                "--option",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="dataset option, e.g. pad_mode=reflect, min_frames=0, tokenizer=PATH, window_fill=resample",
            )
        else:
            p.add_argument("--limit", type=int, default=64)
    args = parser.parse_args(argv)
    name = dataset or args.name
    cls = DATASETS.get(name)
    try:
        if args.command == "prepare":
            opts = dict(o.split("=", 1) for o in args.option)
            summary = cls.prepare(args.root, args.out, progress=not args.no_progress, **opts)
            print(f"{name}: {summary['done']} samples in {summary['out']}; {len(summary['bad'])} bad input(s)")
            if summary.get("left_out"):
                print(f"  {summary['left_out']} clip(s) left out: fewer frames than min_frames (IGM's filter)")
            for sid, why in sorted(summary["bad"].items()):
                print(f"  bad: {sid}: {why}")
        else:
            from benchmark.bench_data import bench_dataset

            row = bench_dataset(name, args.root, args.out, limit=args.limit)
            print(row)
    except FileNotFoundError as exc:  # missing raw data, cache, tokenizer or weights: the message says what to do
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
