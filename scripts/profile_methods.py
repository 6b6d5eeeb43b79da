#!/usr/bin/env python
"""Where each method's training step spends its work: torch.profiler counts per step, at a bench shape.

    .venv/bin/python scripts/profile_methods.py                         # crema_d config, toy tensors (CPU)
    .venv/bin/python scripts/profile_methods.py --full --methods mie    # CREMA-D's real sizes (slow on a CPU)
    .venv/bin/python scripts/profile_methods.py --trace /tmp/traces     # + a Chrome trace per method

Per method and step: convolution forwards and backwards (the number of encoder passes), host syncs
(``aten::_local_scalar_dense``: ``.item()``, ``float(t)``, ``bool(t)``, Python ``if`` on a tensor), fused
``_foreach_*`` optimiser / gradient ops against single-tensor ``add_`` / ``mul_`` calls (Python loops over
parameters), and the step's CPU time as a ratio to joint's. ``--sort`` prints the top operators of one method.
The findings are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.bench import SHAPES, Shape, SyntheticDataset, default_methods, entries_for  # noqa: E402
from benchmark.config import build_config  # noqa: E402
from benchmark.data import to_device  # noqa: E402
from benchmark.registry import DATASETS, METHODS  # noqa: E402
from benchmark.trainer import build_run  # noqa: E402

SMALL = {  # the crema_d config and defaults at sizes a loaded 2-core machine profiles in minutes
    "inputs": {"audio": (1, 64, 48), "visual": (3, 1, 64, 64)},
    "overrides": {"model.resnet_width": 16},
}


def count(events, *names: str) -> int:
    return sum(e.count for e in events if e.key in names)


def count_prefix(events, prefix: str) -> int:
    return sum(e.count for e in events if e.key.startswith(prefix))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="crema_d")
    p.add_argument("--full", action="store_true", help="the shape's real sizes (default: small tensors)")
    p.add_argument("--methods", help="comma-separated (default: the main suite's)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=2, help="profiled steps after one warm-up step")
    p.add_argument("--trace", help="directory for one Chrome trace per method")
    p.add_argument("--sort", help="print the top operators of this method")
    args = p.parse_args()

    real = SHAPES[args.shape]
    shape = (
        real
        if args.full
        else Shape(real.dataset, args.batch, args.batch, SMALL["inputs"], real.sizes, SMALL["overrides"])
    )
    names = args.methods.split(",") if args.methods else default_methods(args.shape)
    if "joint" not in names:
        names = ["joint", *names]
    info = DATASETS.get(shape.dataset)(build_config("joint", shape.dataset, 0, {}).data_cfg).info
    rows, joint_ms = [], None
    for e in entries_for(names, info):
        ov = {
            "train.checkpoint": False,
            **shape.overrides,
            **METHODS.get(e.method).bench_overrides,
            **e.overrides,
            "train.batch_size": args.batch,
        }
        cfg = build_config(e.method, shape.dataset, 0, ov)
        run = build_run(cfg, dataset=SyntheticDataset(cfg.data_cfg, shape, 2 * args.batch, args.batch))
        m = run.method
        m.model.train()
        m.on_epoch_start(0)
        batch = to_device(next(iter(run.ctx.loader("train", epoch=0))), m.device)
        m.training_step(batch, 0)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
            for s in range(args.steps):
                m.training_step(batch, 1 + s)
        ev = prof.key_averages()
        n = args.steps
        total_ms = sum(x.self_cpu_time_total for x in ev) / 1000.0 / n
        joint_ms = joint_ms or total_ms
        rows.append(
            {
                "method": e.label,
                "ms/step": round(total_ms, 1),
                "ratio": round(total_ms / joint_ms, 2),
                "conv fwd": count(ev, "aten::convolution") / n,
                "conv bwd": count(ev, "aten::convolution_backward") / n,
                "syncs": count(ev, "aten::_local_scalar_dense") / n,
                "foreach": count_prefix(ev, "aten::_foreach_") / n,
                "add_/mul_": count(ev, "aten::add_", "aten::mul_", "aten::addcmul_", "aten::div_") / n,
                "norms": count(ev, "aten::linalg_vector_norm", "aten::norm") / n,
                "clones": count(ev, "aten::clone") / n,
            }
        )
        print(rows[-1], flush=True)
        if args.trace:
            Path(args.trace).mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(Path(args.trace) / f"{e.label}.json"))
        if args.sort == e.label:
            print(ev.table(sort_by="self_cpu_time_total", row_limit=25))
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
