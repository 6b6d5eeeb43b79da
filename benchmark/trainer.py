"""The training loop. It knows the :class:`~benchmark.method.Method` hooks and nothing of any method.

Per epoch it trains through ``method.training_step``, steps the method's scheduler, evaluates validation and
test (accuracy, MAP, macro-F1, per-modality accuracy), keeps the history, and saves a resumable checkpoint.
The finished run's row carries the test metrics under three model-selection rules, each labelled:

* ``[best_val]``  -- the epoch with the best validation ``train.select_metric`` (our default protocol);
* ``[last]``      -- the final epoch;
* ``[best_test]`` -- the epoch with the best test metric, the protocol of the official code of these papers.
"""

from __future__ import annotations

import io
import math
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.config import RunConfig
from benchmark.data import SPLITS, MultimodalDataset
from benchmark.method import Method, MethodContext
from benchmark.metrics import METRICS, classification_metrics
from benchmark.models import backbone_name
from benchmark.registry import DATASETS, METHODS
from benchmark.results import ResultStore, atomic_write_bytes

SELECTION_RULES = ("best_val", "last", "best_test")


class NonFiniteLossError(FloatingPointError):
    """A training step returned a NaN or infinite loss; the run is stopped and recorded as failed."""


class NonFiniteOutputError(FloatingPointError):
    """Evaluation produced NaN or infinite logits (diverged weights or BatchNorm statistics); the run fails."""


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


@lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
        )
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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


@torch.no_grad()
def evaluate(method: Method, split: str) -> dict[str, float]:
    """Metrics of ``method.predict`` on a whole split (model in eval mode)."""
    model = method.model
    was_training = model.training
    model.eval()
    logits, labels = [], []
    uni: dict[str, list[torch.Tensor]] = {}
    try:
        for batch in method.ctx.batches(method.ctx.loader(split)):
            out = method.predict(batch)
            logits.append(out.logits.float().cpu())
            labels.append(batch["label"].cpu())
            for m, lg in out.unimodal_logits.items():
                uni.setdefault(m, []).append(lg.float().cpu())
    finally:
        model.train(was_training)
    fused, per_modality = torch.cat(logits), {m: torch.cat(v) for m, v in uni.items()}
    for name, values in {"fused": fused, **per_modality}.items():
        if not torch.isfinite(values).all():
            raise NonFiniteOutputError(
                f"non-finite {name} logits on the {split} split ({int((~torch.isfinite(values)).sum())} values) "
                "in evaluation mode: the weights or BatchNorm running statistics diverged although the training "
                "loss stayed finite; lower train.lr or use a larger train.batch_size / data.image_size"
            )
    return classification_metrics(fused, torch.cat(labels), per_modality)


def select_epochs(history: list[dict[str, Any]], metric: str) -> dict[str, int]:
    """Index into ``history`` chosen by each selection rule (first epoch wins ties)."""

    def best(split: str) -> int:
        values = [h[split].get(metric, float("nan")) for h in history]
        finite = [(v, -i) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
        return -max(finite)[1] if finite else len(history) - 1

    return {"best_val": best("val"), "last": len(history) - 1, "best_test": best("test")}


def summarise(history: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Flat result columns: ``test_<metric>[<rule>]``, ``val_<metric>[<rule>]`` and ``epoch[<rule>]``."""
    out: dict[str, Any] = {}
    for rule, idx in select_epochs(history, metric).items():
        h = history[idx]
        out[f"epoch[{rule}]"] = h["epoch"]
        for name, value in h["test"].items():
            out[f"test_{name}[{rule}]"] = value
        out[f"val_{metric}[{rule}]"] = h["val"].get(metric)
    return out


class Progress:
    """rich progress bars on a terminal; one plain line per epoch otherwise (cluster logs)."""

    def __init__(self, title: str, epochs: int, enabled: bool | None = None) -> None:
        self.title = title
        self.epochs = epochs
        self.rich = sys.stderr.isatty() if enabled is None else enabled
        self._progress = None
        if self.rich:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"),
                transient=True,
            )
            self._progress.start()
            self._epoch_task = self._progress.add_task(title, total=epochs, status="")
            self._step_task = self._progress.add_task("  steps", total=None, status="")

    def start_epoch(self, epoch: int, steps: int | None) -> None:
        if self._progress:
            self._progress.reset(self._step_task, total=steps, description=f"  epoch {epoch + 1}", status="")

    def step(self, loss: float) -> None:
        if self._progress:
            self._progress.update(self._step_task, advance=1, status=f"loss {loss:.4f}")

    def end_epoch(self, epoch: int, line: str) -> None:
        if self._progress:
            self._progress.update(self._epoch_task, completed=epoch + 1, status=line)
            self._progress.console.print(f"{self.title} {line}", highlight=False)
        else:
            print(f"{self.title} {line}", flush=True)

    def close(self) -> None:
        if self._progress:
            self._progress.stop()


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, method: Method, epoch: int, history: list, step_times: list) -> None:
    state = {
        "epoch": epoch,
        "run_id": method.ctx.config.run_id,
        "model": method.model.state_dict(),
        "optimizer": method.optimizer.state_dict() if method.optimizer is not None else None,
        "scheduler": method.scheduler.state_dict() if method.scheduler is not None else None,
        "method": method.extra_state(),
        "history": history,
        "step_times": step_times,
        "rng": _rng_state(),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, method: Method) -> tuple[int, list, list]:
    """Restore a checkpoint into ``method``; returns (next epoch, history, step times)."""
    state = torch.load(path, map_location=method.device, weights_only=False)
    if state.get("run_id") != method.ctx.config.run_id:
        raise RuntimeError(f"checkpoint {path} belongs to run {state.get('run_id')}, not this run")
    method.model.load_state_dict(state["model"])
    # The method's state first: a method that rebuilds its optimiser (per stage) does it here.
    method.load_extra_state(state["method"])
    if method.optimizer is not None and state["optimizer"] is not None:
        method.optimizer.load_state_dict(state["optimizer"])
    if method.scheduler is not None and state["scheduler"] is not None:
        method.scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return state["epoch"] + 1, state["history"], state["step_times"]


def _format_line(epoch: int, epochs: int, train: dict[str, float], metrics: dict[str, dict], secs: float) -> str:
    val, test = metrics["val"], metrics["test"]
    uni = " ".join(f"{k[4:]} {v:.3f}" for k, v in test.items() if k.startswith("acc_"))
    return (
        f"epoch {epoch + 1}/{epochs} loss {train.get('loss', float('nan')):.4f} "
        f"val acc {val['acc']:.4f} test acc {test['acc']:.4f} map {test['map']:.4f} "
        f"f1 {test['macro_f1']:.4f}" + (f" | {uni}" if uni else "") + f" ({secs:.1f}s)"
    )


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
            bar.end_epoch(epoch, _format_line(epoch, epochs, train_stats, metrics, time.perf_counter() - t_epoch))
            if ckpt is not None:
                save_checkpoint(ckpt, method, epoch, history, step_times)
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < epochs:
                raise InterruptedError(f"stopped after epoch {epoch + 1} (stop_after_epoch)")
    finally:
        bar.close()
    wall = time.perf_counter() - wall_start
    row: dict[str, Any] = {
        "run_id": config.run_id,
        "status": "ok",
        "label": METHODS.get(config.method).label(config.method_cfg),
        **METHODS.get(config.method).row_facts(config.method_cfg),  # what the reports show (no torch there)
        **config.flat(),
        **summarise(history, config.train.select_metric),
        "select_metric": config.train.select_metric,
        "epochs_run": len(history),
        "wall_time_s": wall,
        "mean_step_ms": 1000.0 * float(np.mean(step_times)) if step_times else None,
        "device": str(method.device) + (f" ({torch.cuda.get_device_name()})" if cuda else ""),
        "config_id": config.config_id,
        "torch_threads": torch.get_num_threads(),  # CPU results depend on it (see docs/cluster.md)
        "torch_version": torch.__version__,
        "git_commit": git_commit(),
        "host": platform.node(),
        "error": "",
    }
    if store is not None:
        store.write_history(config.run_id, {"history": history, "artifacts": method.artifacts()})
        if config.train.save_model:
            buf = io.BytesIO()
            torch.save(method.model.state_dict(), buf)
            atomic_write_bytes(store.run_dir(config.run_id) / "model.pt", buf.getvalue())
    info = setup.dataset.info
    row["paper_metric"] = info.paper_metric
    for m in info.modalities:  # the encoder actually used (model.backbones or the dataset default)
        row[f"backbone.{m}"] = backbone_name(info, config.model, m)
    assert all(f"test_{m}[best_val]" in row for m in METRICS)
    return row


def failed_row(config: RunConfig, error: BaseException) -> dict[str, Any]:
    """The row recorded for a run that raised (NaN loss, crash): its error is kept for ``--retry-failed``."""
    return {
        "run_id": config.run_id,
        "status": "failed",
        "label": METHODS.get(config.method).label(config.method_cfg),
        **METHODS.get(config.method).row_facts(config.method_cfg),  # what the reports show (no torch there)
        **config.flat(),
        "error": f"{type(error).__name__}: {error}",
        "config_id": config.config_id,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "git_commit": git_commit(),
        "host": platform.node(),
    }
