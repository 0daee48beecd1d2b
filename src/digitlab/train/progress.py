"""Live progress while training, as fastai shows it: a bar per epoch and a table of epoch results.

On a terminal: a rich progress bar over the batches of the epoch (batches done, the latest training loss, the
time left), and one table row per epoch as it finishes. When output is not a terminal (a pipe, a log file):
no bar, only the table's header and one plain line per epoch, so logs stay readable.
"""

from __future__ import annotations

import time
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .callback import Callback

REFRESH_S = 0.1  # update the bar at most this often: reading the loss syncs the device


def format_time(seconds: float) -> str:
    """mm:ss, as fastai's table shows epoch times."""
    seconds = int(round(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def format_row(log: dict, names: list[str], widths: list[int]) -> str:
    """One epoch's log as a fixed-width line: epoch, losses and metrics, time."""
    cells = []
    for name, width in zip(names, widths):
        v = log.get(name)
        text = format_time(v) if name == "time" and v is not None else \
            f"{v:.6f}" if isinstance(v, float) else "-" if v is None else str(v)
        cells.append(text.ljust(width))
    return "  ".join(cells).rstrip()


class ProgressCallback(Callback):
    """Shows training progress on `console`: a live bar on a terminal, plain epoch lines otherwise.

    `mode` is "auto" (bar when the console is a terminal), "bar", "lines" or "quiet" (nothing at all).
    """
    order = 70  # after the Recorder (50): the log is complete when a row is printed
    batch_events_optional = True  # the fast engine's bar moves once per pass
    def __init__(self, console: Console | None = None, mode: str = "auto", printer: Callable | None = None):
        self.console = console or Console()
        if mode == "auto":
            mode = "bar" if self.console.is_terminal else "lines"
        if mode not in ("bar", "lines", "quiet"):
            raise ValueError(f"progress mode must be auto, bar, lines or quiet, got {mode!r}")
        self.mode, self.printer = mode, printer or (lambda s: self.console.print(s, highlight=False, markup=False))
        self.progress = None

    def before_fit(self, learn):
        self.names, self.widths, self.header_done, self.task = None, None, False, None
        if self.mode == "bar":
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[loss]}"), TextColumn("left"), TimeRemainingColumn(),
                                     console=self.console, transient=True)
            self.progress.start()

    def before_train(self, learn):
        self.start_pass(learn, "train")

    def before_validate(self, learn):
        self.start_pass(learn, "valid")

    def start_pass(self, learn, name: str):
        if self.progress is None:
            return
        if self.task is not None:
            self.progress.remove_task(self.task)
        total = len(learn.dls.train if name == "train" else learn.dls.valid)
        self.task = self.progress.add_task(f"epoch {learn.epoch + 1}/{learn.n_epochs} {name}", total=total, loss="")
        self.last = 0.0

    def after_batch(self, learn):
        if self.progress is None:
            return
        now = time.perf_counter()
        done = learn.iter + 1
        if now - self.last >= REFRESH_S or done == learn.n_iter:
            loss = f"loss {learn.loss.item():.4f}" if learn.training else ""
            self.progress.update(self.task, completed=done, loss=loss)
            self.last = now

    def after_train(self, learn):
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=learn.n_iter)

    def after_epoch(self, learn):
        if self.mode == "quiet":
            return
        log = learn.log
        if not self.header_done:
            self.names = list(log)
            self.widths = [max(len(n), 9 if n not in ("epoch", "time") else 5) for n in self.names]
            self.emit("  ".join(n.ljust(w) for n, w in zip(self.names, self.widths)).rstrip())
            self.header_done = True
        self.emit(format_row(log, self.names, self.widths))

    def emit(self, line: str):
        if self.progress is not None:
            self.progress.console.print(line, highlight=False, markup=False)
        else:
            self.printer(line)

    def cleanup_fit(self, learn):
        if self.progress is not None:
            self.progress.stop()
            self.progress, self.task = None, None
