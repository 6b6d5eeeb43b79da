"""The training loop. It knows the :class:`~benchmark.method.Method` hooks and nothing of any method.

Per epoch it trains through ``method.training_step``, steps the method's scheduler, evaluates validation and
test (accuracy, MAP, macro-F1, per-modality accuracy), keeps the history, and saves a resumable checkpoint.
Its side jobs live beside it: :mod:`benchmark.evaluation` (metrics on a split), :mod:`benchmark.checkpoint`
(save/resume), :mod:`benchmark.progress` (display) and :mod:`benchmark.result_row` (the row: model-selection
rules and provenance).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmark.checkpoint import load_checkpoint, save_checkpoint, save_state
from benchmark.config import RunConfig
from benchmark.data import SPLITS, MultimodalDataset
from benchmark.evaluation import evaluate
from benchmark.method import Method, MethodContext
from benchmark.progress import Progress, epoch_line
from benchmark.registry import DATASETS, METHODS
from benchmark.result_row import finished_row
from benchmark.results import ResultStore


class NonFiniteLossError(FloatingPointError):
    """A training step returned a NaN or infinite loss; the run is stopped and recorded as failed."""


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but CUDA is not available; use --set train.device=cpu")
    return device


@dataclass
class RunSetup:
    """Everything built for one run before training starts."""

    config: RunConfig
    dataset: MultimodalDataset
    method: Method
    ctx: MethodContext


def build_run(
    config: RunConfig, store: ResultStore | None = None, on_model: Callable[[Method], None] | None = None
) -> RunSetup:
    """Dataset, method, model and optimiser for ``config`` (seeded).

    ``on_model`` is called with the method once its model exists, before the optimisers are built: the golden
    tests use it to load a released code's initial weights in float64.
    """
    seed_everything(config.seed, config.train.deterministic)
    device = resolve_device(config.train.device)
    dataset = DATASETS.get(config.dataset)(config.data_cfg)
    info = dataset.info
    splits = {s: dataset.split(s) for s in SPLITS}
    run_dir = store.run_dir(config.run_id) if store is not None else None
    ctx = MethodContext(config=config, info=info, device=device, splits=splits, run_dir=run_dir, store=store)
    method = METHODS.get(config.method)(config.method_cfg, ctx)
    method.model = method.build_model().to(device)
    if on_model is not None:
        on_model(method)
    method.optimizer, method.scheduler = method.configure_optimizers()
    method.setup()
    return RunSetup(config=config, dataset=dataset, method=method, ctx=ctx)


def fit(
    config: RunConfig,
    store: ResultStore | None = None,
    *,
    progress: bool | None = None,
    resume: bool = True,
    stop_after_epoch: int | None = None,
    on_model: Callable[[Method], None] | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run; returns its result row. Raises on failure (NaN loss included).

    ``stop_after_epoch`` ends the process's work after that epoch without a result, as a pre-emption would
    (the checkpoint stays); it exists for resume tests. ``on_model``: see :func:`build_run`.
    """
    setup = build_run(config, store, on_model)
    method, ctx = setup.method, setup.ctx
    epochs = config.train.epochs
    history: list[dict[str, Any]] = []
    step_times: list[float] = []
    start_epoch = 0
    ckpt = store.checkpoint_path(config.run_id) if (store is not None and config.train.checkpoint) else None
    if ckpt is not None and resume and ckpt.is_file():
        try:
            start_epoch, history, step_times = load_checkpoint(ckpt, method)
        except Exception as exc:  # unreadable or foreign: set it aside and start over (same result, seeded)
            os.replace(ckpt, ckpt.with_name(ckpt.name + ".corrupt"))
            print(
                f"warning: checkpoint {ckpt} cannot be resumed ({type(exc).__name__}: {exc}); moved to "
                f"{ckpt.name}.corrupt, training {config.run_id} from the start",
                file=sys.stderr,
                flush=True,
            )
            setup = build_run(config, store, on_model)
            method, ctx = setup.method, setup.ctx
    cuda = method.device.type == "cuda"
    bar = Progress(f"[{config.method}/{config.dataset}/s{config.seed}]", epochs, progress)
    wall_start = time.perf_counter()
    try:
        for epoch in range(start_epoch, epochs):
            t_epoch = time.perf_counter()
            method.model.train()
            method.on_epoch_start(epoch)
            loader = method.train_loader(epoch)
            limit = config.train.max_steps_per_epoch
            n_steps = len(loader) if hasattr(loader, "__len__") else None
            bar.start_epoch(epoch, min(n_steps, limit) if (limit and n_steps) else (limit or n_steps))
            sums: dict[str, float] = {}
            count = 0
            for step, batch in enumerate(ctx.batches(loader, limit)):
                t0 = time.perf_counter()
                stats = method.training_step(batch, step)
                if cuda:
                    torch.cuda.synchronize()
                step_times.append(time.perf_counter() - t0)
                loss = float(stats.get("loss", float("nan")))
                if not math.isfinite(loss):
                    raise NonFiniteLossError(
                        f"non-finite loss ({loss}) in {config.method} on {config.dataset}, epoch {epoch + 1}, "
                        f"step {step + 1}; lower train.lr or check the method's hyper-parameters"
                    )
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
                bar.step(loss)
            method.on_epoch_end(epoch)
            if method.scheduler is not None:
                method.scheduler.step()
            metrics = {split: evaluate(method, split) for split in ("val", "test")}
            method.on_evaluation_end(epoch, metrics)
            train_stats = {k: v / max(count, 1) for k, v in sums.items()}
            lr = method.optimizer.param_groups[0]["lr"] if method.optimizer is not None else None
            history.append({"epoch": epoch + 1, "train": train_stats, "lr": lr, **metrics})
            bar.end_epoch(epoch, epoch_line(epoch, epochs, train_stats, metrics, time.perf_counter() - t_epoch))
            if ckpt is not None:
                save_checkpoint(ckpt, method, epoch, history, step_times)
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < epochs:
                raise InterruptedError(f"stopped after epoch {epoch + 1} (stop_after_epoch)")
    finally:
        bar.close()
    wall = time.perf_counter() - wall_start
    device = str(method.device) + (f" ({torch.cuda.get_device_name()})" if cuda else "")
    row = finished_row(config, setup.dataset.info, history, step_times, wall, device)
    if store is not None:
        store.write_history(config.run_id, {"history": history, "artifacts": method.artifacts()})
        if config.train.save_model:
            save_state(store.run_dir(config.run_id) / "model.pt", method.model.state_dict())
    return row
