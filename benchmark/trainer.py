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
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.checkpoint import load_checkpoint, save_checkpoint, save_state
from benchmark.config import RunConfig, TrainConfig
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


def encoder_modules(model: nn.Module) -> list[nn.Module]:
    """The outermost submodules that follow the backbone contract (an ``out_dim`` attribute): the encoders."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(getattr(child, "out_dim", None), int):
                found.append(child)
            else:
                visit(child)

    visit(model)
    return found


def accelerate(
    model: nn.Module,
    train: TrainConfig,
    device: torch.device,
    force_channels_last: bool = False,
    compile_backend: str = "inductor",
) -> None:
    """The model side of the GPU fast path, in place: ``channels_last`` conv weights on CUDA (``train.channels_last``;
    ``force_channels_last`` applies it on any device, for tests) and ``torch.compile`` of every encoder's forward
    (``train.compile``). Both keep the module tree, the parameters' identity and the state_dict keys.

    The compiled forward is the class's ``forward`` bound to the module (not a compiled ``_call_impl``), so a
    ``copy.deepcopy`` of the model (G-Blending's probes) runs the copy's parameters, not the original's.
    """
    if train.channels_last and (device.type == "cuda" or force_channels_last):
        model.to(memory_format=torch.channels_last)  # 4-d weights only; Linear and 3-d/5-d weights are untouched
    if train.compile:
        encoders = encoder_modules(model)
        if not encoders:
            raise ValueError(
                "train.compile=true but the model has no encoder (a submodule with an out_dim attribute) to compile; "
                "set train.compile=false"
            )
        for enc in encoders:
            compiled = torch.compile(type(enc).forward, backend=compile_backend)
            enc.forward = types.MethodType(compiled, enc)


@dataclass
class RunSetup:
    """Everything built for one run before training starts."""

    config: RunConfig
    dataset: MultimodalDataset
    method: Method
    ctx: MethodContext


def build_run(
    config: RunConfig,
    store: ResultStore | None = None,
    on_model: Callable[[Method], None] | None = None,
    dataset: MultimodalDataset | None = None,
) -> RunSetup:
    """Dataset, method, model and optimiser for ``config`` (seeded).

    ``on_model`` is called with the method once its model exists, before the optimisers are built: the golden
    tests use it to load a released code's initial weights in float64. ``dataset`` replaces the registered
    dataset of ``config.dataset`` (the benchmark's synthetic tensors at a dataset's real shapes); the config,
    and so every method's defaults for that dataset, stay those of ``config.dataset``.
    """
    seed_everything(config.seed, config.train.deterministic)
    device = resolve_device(config.train.device)
    if dataset is None:
        dataset = DATASETS.get(config.dataset)(config.data_cfg)
    info = dataset.info
    splits = {s: dataset.split(s) for s in SPLITS}
    run_dir = store.run_dir(config.run_id) if store is not None else None
    ctx = MethodContext(config=config, info=info, device=device, splits=splits, run_dir=run_dir, store=store)
    method = METHODS.get(config.method)(config.method_cfg, ctx)
    method.model = method.build_model().to(device)
    if on_model is not None:
        on_model(method)
    accelerate(method.model, config.train, device)
    method.optimizer, method.scheduler = method.configure_optimizers()
    method.setup()
    return RunSetup(config=config, dataset=dataset, method=method, ctx=ctx)


class StepStats:
    """Per-epoch means of a method's step statistics, and the non-finite-loss stop.

    A statistic may be a Python number or a tensor (``training_step`` may return ``{"loss": loss.detach()}``).
    With ``every == 1`` each step's loss is read and checked at once (CPU runs, as before). With ``every > 1``
    (CUDA) tensors stay on the device and are read together every ``every`` steps, one host sync per window;
    a non-finite loss still stops the run naming its own step, at most ``every - 1`` steps later.
    """

    def __init__(self, every: int, on_nonfinite: Callable[[int, float], Exception]) -> None:
        self.every = max(1, int(every))
        self.on_nonfinite = on_nonfinite
        self.sums: dict[str, Any] = {}
        self.count = 0
        self.last_loss = float("nan")
        self._pending: list[tuple[int, torch.Tensor]] = []

    def add(self, step: int, stats: dict[str, Any]) -> bool:
        """Account one step; True when the pending losses were read (a host sync happened)."""
        loss = stats.get("loss", float("nan"))
        read = False
        if torch.is_tensor(loss) and self.every > 1:
            self._pending.append((step, loss.detach().reshape(())))
            if len(self._pending) >= self.every:
                self.flush()
                read = True
        else:
            self._check(step, float(loss))
            read = True
        for k, v in stats.items():
            if torch.is_tensor(v) and self.every > 1:
                v = v.detach().to(torch.float64)
                self.sums[k] = v if k not in self.sums else self.sums[k] + v
            else:
                self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.count += 1
        return read

    def flush(self) -> None:
        if not self._pending:
            return
        values = torch.stack([v.to(torch.float64) for _, v in self._pending]).cpu().tolist()
        steps = [s for s, _ in self._pending]
        self._pending = []
        for step, value in zip(steps, values):
            self._check(step, value)

    def _check(self, step: int, loss: float) -> None:
        self.last_loss = loss
        if not math.isfinite(loss):
            raise self.on_nonfinite(step, loss)

    def means(self) -> dict[str, float]:
        self.flush()
        return {k: float(v) / max(self.count, 1) for k, v in self.sums.items()}


class StepTimer:
    """Seconds per ``training_step``: wall clock on the CPU; CUDA events on a GPU (no host sync per step),
    read by :meth:`flush` once the window's work is done."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self._open: Any = None
        self._done: list[Any] = []

    def start(self) -> None:
        if self.cuda:
            self._open = torch.cuda.Event(enable_timing=True)
            self._open.record()
        else:
            self._open = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._done.append((self._open, end))
        else:
            self._done.append(time.perf_counter() - self._open)

    def flush(self) -> list[float]:
        done, self._done = self._done, []
        if not self.cuda:
            return done
        if done:
            done[-1][1].synchronize()
        return [start.elapsed_time(end) / 1000.0 for start, end in done]


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

            def nonfinite(step: int, loss: float, epoch: int = epoch) -> NonFiniteLossError:
                return NonFiniteLossError(
                    f"non-finite loss ({loss}) in {config.method} on {config.dataset}, epoch {epoch + 1}, "
                    f"step {step + 1}; lower train.lr or check the method's hyper-parameters"
                )

            stats_acc = StepStats(config.train.log_every if cuda else 1, nonfinite)
            timer = StepTimer(cuda)
            for step, batch in enumerate(ctx.batches(loader, limit)):
                timer.start()
                stats = method.training_step(batch, step)
                timer.stop()
                if stats_acc.add(step, stats):  # the window was read (one host sync): collect its step times
                    step_times.extend(timer.flush())
                bar.step(stats_acc.last_loss)
            train_stats = stats_acc.means()
            step_times.extend(timer.flush())
            method.on_epoch_end(epoch)
            if method.scheduler is not None:
                method.scheduler.step()
            metrics = {split: evaluate(method, split) for split in ("val", "test")}
            method.on_evaluation_end(epoch, metrics)
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
