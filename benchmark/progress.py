"""The trainer's progress display: rich bars on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

import sys


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


def epoch_line(epoch: int, epochs: int, train: dict[str, float], metrics: dict[str, dict], secs: float) -> str:
    """One epoch's summary: mean loss, val/test accuracy, test MAP and macro-F1, per-modality accuracy."""
    val, test = metrics["val"], metrics["test"]
    uni = " ".join(f"{k[4:]} {v:.3f}" for k, v in test.items() if k.startswith("acc_"))
    return (
        f"epoch {epoch + 1}/{epochs} loss {train.get('loss', float('nan')):.4f} "
        f"val acc {val['acc']:.4f} test acc {test['acc']:.4f} map {test['map']:.4f} "
        f"f1 {test['macro_f1']:.4f}" + (f" | {uni}" if uni else "") + f" ({secs:.1f}s)"
    )
