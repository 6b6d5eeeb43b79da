"""Resumable checkpoints: model, optimiser, scheduler, method state, history and every RNG, written atomically."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.method import Method
from benchmark.results import atomic_write_bytes


def rng_state() -> dict[str, Any]:
    """The state of every random generator a run draws from (torch, CUDA when present, NumPy, ``random``)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, method: Method, epoch: int, history: list, step_times: list) -> None:
    """The state after ``epoch`` (0-based), written atomically to ``path``."""
    state = {
        "epoch": epoch,
        "run_id": method.ctx.config.run_id,
        "model": method.model.state_dict(),
        "optimizer": method.optimizer.state_dict() if method.optimizer is not None else None,
        "scheduler": method.scheduler.state_dict() if method.scheduler is not None else None,
        "method": method.extra_state(),
        "history": history,
        "step_times": step_times,
        "rng": rng_state(),
    }
    save_state(path, state)


def save_state(path: Path, state: Any) -> None:
    """``torch.save`` of ``state`` to ``path`` through an atomic write (no torn file on a crash)."""
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
    set_rng_state(state["rng"])
    return state["epoch"] + 1, state["history"], state["step_times"]
