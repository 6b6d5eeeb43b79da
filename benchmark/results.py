"""The result store: one directory per run, one row per finished run, CSV views per suite.

Layout under ``results/`` (or ``--results DIR``)::

    runs/<run_id>/result.json    the run's row (status ok or failed), the source of truth
    runs/<run_id>/history.json   per-epoch metrics and the method's analysis artefacts
    runs/<run_id>/checkpoint.pt  resumable state while the run is in progress (not in git)
    runs/<run_id>/result.previous.json   the row a ``--force`` rerun replaces, set aside when the rerun starts
    suites/<suite>.json          the suite's members: every run id any invocation of the suite planned
    <suite>.csv                  the rows of the suite's finished members, rebuilt from the result files
    .lock                        serialises membership updates and CSV rebuilds

Every file is written atomically (a temporary file in the same directory, fsync, ``os.replace``), so an
interrupted process leaves either the old file or the new one, never a truncated one. Membership updates and
CSV rebuilds hold the store's lock, so concurrent sweeps and array tasks cannot drop each other's rows. A
result file that cannot be parsed (a disk error, a manual edit) is reported by path and read as missing: its
run counts as to do and the other runs go on.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

RESULT_FILE = "result.json"
PREVIOUS_RESULT_FILE = "result.previous.json"
HISTORY_FILE = "history.json"
CHECKPOINT_FILE = "checkpoint.pt"
SUITES_DIR = "suites"
_REPORTED: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Print ``message`` to stderr the first time ``key`` is seen in this process."""
    if key not in _REPORTED:
        _REPORTED.add(key)
        print(f"warning: {message}", file=sys.stderr, flush=True)


def read_json_record(path: Path, what: str, then: str = "ignored") -> dict[str, Any] | None:
    """A JSON object from ``path``; None if missing, or if unreadable (reported once, by path, with ``then``)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warn_once(str(path), f"{path} is not a valid {what} ({type(exc).__name__}: {exc}); {then}")
        return None
    if not isinstance(data, dict):
        warn_once(str(path), f"{path} is not a valid {what} (a JSON {type(data).__name__}, not an object); {then}")
        return None
    return data


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
        """The run's row; None if it has none, or if the file is corrupt (reported by path: the run is to do)."""
        return read_json_record(
            self.run_dir(run_id) / RESULT_FILE, "result file", "the run counts as to do and is trained again"
        )

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

    def set_aside(self, run_id: str) -> None:
        """Move the run's result to ``result.previous.json`` (a ``--force`` rerun starts): until the rerun
        finishes the run counts as to do, and an interrupted rerun resumes instead of leaving the old row."""
        path = self.run_dir(run_id) / RESULT_FILE
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, path.with_name(PREVIOUS_RESULT_FILE))

    def write_history(self, run_id: str, history: dict[str, Any]) -> Path:
        path = self.run_dir(run_id) / HISTORY_FILE
        atomic_write_json(path, history)
        return path

    def read_history(self, run_id: str) -> dict[str, Any] | None:
        return read_json_record(self.run_dir(run_id) / HISTORY_FILE, "history file")

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
        """The store's exclusive lock (``<root>/.lock``); not re-entrant: never nest it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # -- suites --------------------------------------------------------------------------------------------
    def suite_path(self, name: str) -> Path:
        return self.root / SUITES_DIR / f"{name}.json"

    def _read_members(self, name: str) -> dict[str, bool]:
        data = read_json_record(self.suite_path(name), "suite membership record") or {}
        return {str(k): bool(v) for k, v in (data.get("runs") or {}).items()}

    def suite_members(self, name: str) -> dict[str, bool]:
        """``{run_id: own}`` of every run planned by an invocation of suite ``name``; ``own``: the suite's own
        configuration (no ``--set`` changed it), the rows its headline tables show."""
        return self._read_members(name)

    def add_to_suite(self, name: str, run_ids: Iterable[str], own: set[str] | None = None) -> None:
        """Record ``run_ids`` as members of suite ``name`` (under the lock; members are never removed).

        ``own``: which of them are the suite's own configuration; a run once recorded as own stays so. None:
        runs not yet members count as own, members keep their flag.
        """
        ids = list(run_ids)
        with self.lock():
            members = self._read_members(name)
            for i in ids:
                if own is None:
                    members.setdefault(i, True)
                else:
                    members[i] = members.get(i, False) or i in own
            atomic_write_json(self.suite_path(name), {"suite": name, "runs": dict(sorted(members.items()))})

    def write_csv(self, name: str, run_ids: Iterable[str] | None = None) -> Path:
        """Rebuild ``<root>/<name>.csv`` from the result files of the suite's members (or of ``run_ids``).

        Under the store's lock, so concurrent rebuilds cannot drop rows. The ``suite_config`` column says which
        rows are the suite's own configuration.
        """
        path = self.root / f"{name}.csv"
        with self.lock():
            members = self._read_members(name) if run_ids is None else {i: True for i in run_ids}
            df = self.frame(list(members))
            if not df.empty:
                df["suite_config"] = df["run_id"].map(lambda i: members.get(str(i), True))
                df = df.sort_values([c for c in ("dataset", "method", "label", "seed") if c in df], kind="stable")
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


class CorruptCSVError(ValueError):
    """A result CSV that is truncated or garbled (a row with the wrong number of fields, no final newline)."""


def check_csv(path: str | os.PathLike[str]) -> None:
    """Raise :class:`CorruptCSVError` naming ``path`` unless every record has the header's number of fields and
    the file ends with a newline (as every CSV this store writes does)."""
    import csv

    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise CorruptCSVError(f"{path} is garbled (not UTF-8 text: {exc})") from None
    if not text.strip():
        return
    if not text.endswith("\n"):
        raise CorruptCSVError(f"{path} is truncated (its last line has no line end)")
    try:
        records = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise CorruptCSVError(f"{path} is garbled ({exc})") from None
    width = len(records[0])
    for line, rec in enumerate(records[1:], 2):
        if rec and len(rec) != width:
            raise CorruptCSVError(
                f"{path} is truncated or garbled (record {line} has {len(rec)} fields, the header {width})"
            )


def read_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    return pd.read_csv(path)
