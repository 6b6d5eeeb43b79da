"""The result store: one directory per run, one row per finished run, CSV views per suite.

Layout under ``results/`` (or ``--results DIR``)::

    runs/<run_id>/result.json    the run's row (status ok or failed), the source of truth
    runs/<run_id>/history.json   per-epoch metrics and the method's analysis artefacts
    runs/<run_id>/checkpoint.pt  resumable state while the run is in progress (not in git)
    <suite>.csv                  the rows of a suite's runs, rebuilt from the result files

Every file is written atomically (a temporary file in the same directory, fsync, ``os.replace``), so an
interrupted process leaves either the old file or the new one, never a truncated one. CSV rebuilds are
serialised with an advisory lock so concurrent array tasks cannot drop each other's rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

RESULT_FILE = "result.json"
HISTORY_FILE = "history.json"
CHECKPOINT_FILE = "checkpoint.pt"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _clean(obj: Any) -> Any:
    """JSON cannot hold NaN/Inf portably: store them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _clean(obj.item())
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(_clean(obj), indent=1, sort_keys=True).encode())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


class ResultStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- per run ---------------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def read(self, run_id: str) -> dict[str, Any] | None:
        path = self.run_dir(run_id) / RESULT_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None

    def status(self, run_id: str) -> str | None:
        """``"ok"``, ``"failed"`` or None (never finished)."""
        row = self.read(run_id)
        return None if row is None else str(row.get("status", "ok"))

    def is_done(self, run_id: str) -> bool:
        return self.status(run_id) == "ok"

    def write_result(self, row: dict[str, Any]) -> Path:
        path = self.run_dir(row["run_id"]) / RESULT_FILE
        atomic_write_json(path, row)
        return path

    def write_history(self, run_id: str, history: dict[str, Any]) -> Path:
        path = self.run_dir(run_id) / HISTORY_FILE
        atomic_write_json(path, history)
        return path

    def read_history(self, run_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.run_dir(run_id) / HISTORY_FILE).read_text())
        except FileNotFoundError:
            return None

    def checkpoint_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / CHECKPOINT_FILE

    # -- all runs --------------------------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        runs = self.root / "runs"
        if not runs.is_dir():
            return []
        return sorted(p.name for p in runs.iterdir() if (p / RESULT_FILE).is_file())

    def rows(self, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        ids = self.run_ids() if run_ids is None else run_ids
        return [row for row in (self.read(i) for i in ids) if row is not None]

    def frame(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        rows = self.rows(run_ids)
        if not rows:
            return pd.DataFrame()
        df = pd.DataFrame([flatten_row(r) for r in rows])
        front = [c for c in ROW_FRONT if c in df.columns]
        return df[front + [c for c in df.columns if c not in front]]

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def write_csv(self, name: str, run_ids: Iterable[str] | None = None) -> Path:
        """Rebuild ``<root>/<name>.csv`` from the result files of ``run_ids`` (all runs if None)."""
        path = self.root / f"{name}.csv"
        ids = list(run_ids) if run_ids is not None else None
        with self.lock():
            df = self.frame(ids)
            if not df.empty:
                df = df.sort_values(["dataset", "method", "label", "seed"], kind="stable")
            buf = io.StringIO()
            df.to_csv(buf, index=False)
            atomic_write_text(path, buf.getvalue())
        return path


ROW_FRONT = ["run_id", "status", "method", "label", "dataset", "seed"]


def flatten_row(row: dict[str, Any]) -> dict[str, Any]:
    """Result rows are flat already except list/dict values, which become JSON strings in CSV."""
    out = {}
    for k, v in row.items():
        out[k] = json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v
    return out


def read_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    return pd.read_csv(path)
