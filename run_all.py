#!/usr/bin/env python
"""mmbalance-bench command line: run a suite (or a selection of it), list what is registered, benchmark.

Examples::

    python run_all.py                                  # the quick suite on the embedded dataset
    python run_all.py --list                           # methods, datasets, backbones, suites
    python run_all.py --methods joint --datasets av_digits --seeds 0,1 --set train.epochs=3
    python run_all.py --suite quick --dry-run          # the plan: done / failed / running / to do
    python run_all.py --status                         # that, per suite, as a table
    python run_all.py --suite ablation --cluster local --workers 2
    python run_all.py --suite main --cluster slurm --profile benchmark/cluster_profiles/example.toml:gpu
    python run_all.py --suite main --cluster slurm --partition gpu --gpus 1 --time 600 --sbatch reservation=x
    python run_all.py --bench                          # step-time ratios to joint -> reports/perf.csv
    python run_all.py --bench --shapes crema_d         # the same at CREMA-D's model and input sizes
    python run_all.py --report-only                    # every table and figure from results/*.csv (no torch)
    python run_all.py --report-only --suite main --rule best_test
    python run_all.py --rebuild-csv --suite quick        # rewrite results/quick.csv from the result files
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _csv_list(text: str | None, flag: str = "") -> list[str] | None:
    """Comma-separated names; None when the flag is absent. A flag given without any name is an error."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ValueError(f"{flag} {text!r} names nothing; give comma-separated values, or leave {flag} out")
    return names


def _seed_list(text: str | None) -> list[int] | None:
    seeds = _csv_list(text, "--seeds")
    if seeds is None:
        return None
    bad = [s for s in seeds if not s.lstrip("-").isdigit()]
    if bad:
        raise ValueError(f"--seeds: {', '.join(repr(b) for b in bad)} is not an integer (e.g. --seeds 0,1,2)")
    return [int(s) for s in seeds]


def check_results_dir(path: Path, write: bool = True) -> None:
    """Stop with a clear message unless ``--results`` is a directory (or can be made one) and, with ``write``,
    writable."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--results {path} is not a directory; choose a directory for the results")
    if not write:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(
            f"--results {path} is not writable ({exc.strerror or exc}); choose a directory you can write to"
        ) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="run_all.py",
        description="Run modality-imbalance methods and render the paper's tables.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    p.add_argument("--suite", default=None, help="suite to run (default: quick); see --list")
    p.add_argument("--methods", help="comma-separated methods (default: the suite's)")
    p.add_argument("--datasets", help="comma-separated datasets (default: the suite's)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the suite's)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. train.lr=0.01 or method.alpha=0.8 (repeatable)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan (done / failed / to do) and exit")
    p.add_argument("--list", action="store_true", help="list registered methods, datasets, backbones, suites")
    p.add_argument("--force", action="store_true", help="rerun runs that already finished")
    p.add_argument("--retry-failed", action="store_true", help="rerun runs recorded as failed")
    p.add_argument("--results", default=str(ROOT / "results"), help="result directory (default: results/)")
    p.add_argument("--reports", default=str(ROOT / "reports"), help="report directory (default: reports/)")
    b = p.add_argument_group("benchmark (--bench; docs/performance.md)")
    b.add_argument("--bench", action="store_true", help="measure step-time ratios to joint and loader speed")
    b.add_argument(
        "--shapes",
        help="comma-separated: av_digits (default; the embedded dataset) and/or the papers' sizes on synthetic "
        "tensors: crema_d, kinetics_sounds, twitter2015",
    )
    b.add_argument("--bench-rounds", type=int, default=15, help="rounds at most (default 15)")
    b.add_argument("--bench-steps", type=int, help="timed steps per method per round (default: 5 on CUDA, 1-2 on CPU)")
    b.add_argument("--bench-batch", type=int, help="batch for every method (default: the papers' on CUDA, 2 on CPU)")
    b.add_argument(
        "--bench-minutes",
        type=float,
        default=15.0,
        help="time budget per shape; rounds stop once it is spent (at least 3 rounds; default 15)",
    )
    b.add_argument(
        "--bench-extra-batches",
        type=int,
        default=4,
        help="batches of the synthetic training split the per-epoch extras are timed on (default 4)",
    )
    b.add_argument("--bench-no-loader", action="store_true", help="skip the loader measurements")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="render the tables and figures of results/<suite>.csv (all CSVs without --suite) and exit",
    )
    p.add_argument(
        "--rebuild-csv",
        action="store_true",
        help="rewrite results/<suite>.csv from the result files of the suite's runs (no training), then render it",
    )
    p.add_argument(
        "--rule",
        default="best_val",
        choices=("best_val", "last", "best_test"),
        help="model-selection rule of the reported numbers (default: best_val)",
    )
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of progress bars")
    p.add_argument(
        "--status", action="store_true", help="done / failed / running / to do per suite (all suites, or --suite)"
    )
    c = p.add_argument_group("executors (docs/cluster.md)")
    c.add_argument(
        "--cluster",
        choices=("inline", "local", "slurm"),
        default="inline",
        help="inline: this process (default); local: N processes; slurm: job arrays through submitit",
    )
    c.add_argument("--profile", help="cluster profile file (.toml or .json; FILE:TABLE picks a table); flags win")
    c.add_argument("--workers", type=int, help="--cluster local: processes at once (default 2)")
    c.add_argument("--partition", help="Slurm partition")
    c.add_argument("--gpus", type=int, help="GPUs per job")
    c.add_argument("--cpus", type=int, help="CPUs per job (default 2)")
    c.add_argument("--mem", dest="mem_gb", type=float, help="memory per job in GB")
    c.add_argument("--time", dest="time_min", type=int, help="time limit per job in minutes (default 240)")
    c.add_argument("--account", help="Slurm account")
    c.add_argument("--qos", help="Slurm QoS")
    c.add_argument("--constraint", help="Slurm node constraint")
    c.add_argument("--array-parallelism", type=int, help="array tasks running at once (default 64)")
    c.add_argument(
        "--signal-delay",
        dest="signal_delay_s",
        type=int,
        help="seconds between the time-limit signal (checkpoint + requeue) and the kill (default 120)",
    )
    c.add_argument("--max-requeues", type=int, help="time-limit requeues per run (default 3)")
    c.add_argument("--sbatch", action="append", metavar="KEY=VALUE", help="any other sbatch option (repeatable)")
    c.add_argument("--logs", help="submitit log folder (default: <results>/<cluster>_logs)")
    c.add_argument(
        "--lock-wait",
        dest="lock_wait_s",
        type=float,
        help="seconds a task waits for another process holding its run (default 30)",
    )
    c.add_argument("--no-wait", action="store_true", help="submit and return (do not wait for the jobs)")
    return p.parse_args(argv)


CLUSTER_FLAGS = (
    "workers",
    "partition",
    "gpus",
    "cpus",
    "mem_gb",
    "time_min",
    "account",
    "qos",
    "constraint",
    "array_parallelism",
    "signal_delay_s",
    "max_requeues",
    "logs",
    "lock_wait_s",
)


def cluster_options(args: argparse.Namespace):
    """Defaults < profile file < command line."""
    from benchmark.config import parse_set_args
    from benchmark.executors import ClusterOptions, load_profile

    opts = ClusterOptions()
    if args.profile:
        opts = opts.updated(load_profile(args.profile))
    flags = {k: getattr(args, k) for k in CLUSTER_FLAGS if getattr(args, k) is not None}
    if args.sbatch:
        flags["sbatch"] = {k.lstrip("-"): v for k, v in parse_set_args(args.sbatch).items()}
    if args.no_wait:
        flags["wait"] = False
    return opts.updated(flags)


def cmd_list() -> None:
    from rich.console import Console
    from rich.table import Table

    from benchmark.registry import BACKBONES, DATASETS, METHODS, SUITES

    console = Console()
    for reg in (METHODS, DATASETS, BACKBONES, SUITES):
        table = Table(title=f"{reg.kind}s", title_justify="left", show_header=True)
        table.add_column("name", style="bold")
        table.add_column("description")
        for entry in reg:
            aliases = reg.aliases_of(entry.name)
            name = entry.name + (f" ({', '.join(aliases)})" if aliases else "")
            table.add_row(name, entry.description)
        console.print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    previous = None
    try:
        with contextlib.suppress(ValueError):  # (not in the main thread: keep the default)
            previous = signal.signal(signal.SIGTERM, _terminate)  # `kill PID` stops like Ctrl-C
        return _main(args)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished runs are kept; an interrupted run resumes from its last epoch when you launch "
            "the same command again",
            file=sys.stderr,
        )
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _main(args: argparse.Namespace) -> int:
    if args.report_only:  # files only: no registry, no torch
        from benchmark.reports import report_only

        return report_only(Path(args.results), Path(args.reports), args.suite, args.rule)
    if args.rebuild_csv:
        return rebuild_csvs(args)
    from benchmark.config import ConfigError, parse_set_args
    from benchmark.registry import SUITES, UnknownNameError

    if args.list:
        cmd_list()
        return 0
    try:
        overrides = parse_set_args(args.overrides)
        methods, datasets = _csv_list(args.methods, "--methods"), _csv_list(args.datasets, "--datasets")
        seeds = _seed_list(args.seeds)
        if args.bench:
            from benchmark.bench import run_bench

            run_bench(
                Path(args.reports),
                steps=args.bench_steps,
                methods=methods,
                overrides=overrides,
                shapes=_csv_list(args.shapes, "--shapes") or ["av_digits"],
                rounds=args.bench_rounds,
                batch=args.bench_batch,
                budget_s=60.0 * args.bench_minutes,
                extra_batches=args.bench_extra_batches,
                cache_vs_raw=not args.bench_no_loader,
                train_loader_rate=not args.bench_no_loader,
            )
            return 0
        check_results_dir(Path(args.results), write=False)
        if args.status:
            from benchmark.results import ResultStore
            from benchmark.runner import print_status

            print_status([SUITES.resolve(args.suite)] if args.suite else SUITES.names(), ResultStore(args.results))
            return 0
        suite = SUITES.get(args.suite or "quick")
        from benchmark.results import ResultStore
        from benchmark.runner import new_launch_id, plan, resolve

        configs = resolve(suite.specs(methods, datasets, seeds, overrides))
        # Every run planned here joins the suite (results/suites/<suite>.json), so its CSV keeps the runs of
        # every invocation; the suite's own configuration (no --set) is marked for the headline tables.
        own = {c.run_id for c in (resolve(suite.specs(methods, datasets, seeds)) if overrides else configs)}
        options = cluster_options(args) if args.cluster != "inline" else None
        if not args.dry_run:
            check_results_dir(Path(args.results))
    except (ConfigError, UnknownNameError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = ResultStore(args.results)
    planned = plan(configs, store)
    if args.dry_run:
        from benchmark.runner import print_plan

        print_plan(planned, suite.name)
        return 0
    store.add_to_suite(suite.name, [c.run_id for c in configs], own=own)
    launch_id = new_launch_id()
    if options is not None:
        return launch_sweep(args, suite.name, configs, store, options, launch_id)
    from benchmark.runner import run_inline

    rows = run_inline(
        configs,
        store,
        force=args.force,
        retry_failed=args.retry_failed,
        progress=False if args.no_progress else None,
        csv_name=suite.name,
        launch_id=launch_id,
    )
    csv_path = store.write_csv(suite.name)
    render_and_print(args, suite.name, csv_path)
    failed = sum(1 for r in rows if r.get("status") == "failed")
    left = sum(1 for r in rows if not r.get("status"))
    if failed:
        print(f"{failed} run(s) failed; their errors are in the CSV (rerun them with --retry-failed)")
    if left:
        print(f"{left} run(s) left to do (see above why); launch the same command again to run them")
    return 1 if failed or left else 0


def rebuild_csvs(args: argparse.Namespace) -> int:
    """``--rebuild-csv``: rewrite the CSV of ``--suite`` (every suite with a membership record) and render it."""
    from benchmark.results import SUITES_DIR, ResultStore

    try:
        check_results_dir(Path(args.results))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = ResultStore(args.results)
    names = [args.suite] if args.suite else sorted(p.stem for p in (store.root / SUITES_DIR).glob("*.json"))
    if not names:
        print(f"error: no suite has run in {store.root} yet (no {store.root / SUITES_DIR}/*.json)", file=sys.stderr)
        return 2
    for name in names:
        if not store.suite_path(name).is_file():
            print(
                f"error: suite {name!r} has never run in {store.root} ({store.suite_path(name)} is missing)",
                file=sys.stderr,
            )
            return 2
        csv_path = store.write_csv(name)
        render_and_print(args, name, csv_path)
    return 0


def render_and_print(args: argparse.Namespace, name: str, csv_path: Path) -> None:
    """Render the suite's tables and figures from its CSV and say where everything is."""
    from rich.console import Console

    from benchmark.reports import render_report

    written = render_report(csv_path, Path(args.reports), name, args.rule, console=Console())
    print(f"\nresults: {csv_path}")
    print(f"report:  {written[0]} ({len(written)} files in {Path(written[0]).parent}; LaTeX: {written[1]})")


def launch_sweep(args: argparse.Namespace, name: str, configs: list, store, options, launch_id: str) -> int:
    """``--cluster local|slurm``: submit what is left, wait, rebuild the CSV from the result files."""
    from benchmark.executors import launch
    from benchmark.runner import plan, plan_counts

    try:
        outcome = launch(
            configs,
            store,
            cluster=args.cluster,
            options=options,
            force=args.force,
            retry_failed=args.retry_failed,
            csv_name=name,
            launch_id=launch_id,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not options.wait and outcome["submitted"]:
        return 0
    csv_path = store.write_csv(name)
    render_and_print(args, name, csv_path)
    counts = plan_counts(plan(configs, store))
    print(
        f"suite {name}: {counts['runs']} runs, {counts['ok']} done, {counts['failed']} failed, "
        f"{counts['running']} running, {counts['todo']} to do"
    )
    for key, error in outcome["errors"].items():
        print(f"  {key}: {error}")
    if counts["failed"]:
        print("failed runs keep their error in the CSV; rerun them with --retry-failed")
    queued = outcome.get("queued", 0)
    if queued:
        print(f"{queued} run(s) still queued in Slurm from an earlier launch: follow them with --status")
    left = counts["todo"] - queued
    if left > 0:
        print("runs left to do (cancelled or killed jobs): launch the same command again to submit only those")
    if not options.wait:  # nothing new to submit: fine while the rest is queued or running elsewhere
        return 0 if counts["failed"] == 0 and left <= 0 else 1
    return 0 if counts["ok"] == counts["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
