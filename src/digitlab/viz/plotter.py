"""A plotter process: figures drawn beside the caller's work instead of after it.

`Plotter()` forks children that import matplotlib at once and then draw each figure they are sent. Made before
torch is imported, a child needs no torch (jobs carry numbers and numpy arrays), so its start costs the
caller only the fork, and matplotlib's half-second import overlaps the caller's own. Where fork is missing or
unsafe (Windows, macOS) the same calls draw in this process when `close` is called.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from pathlib import Path


def can_fork() -> bool:
    """True where os.fork is available and safe to use in a process with threads (Linux and the BSDs)."""
    return hasattr(os, "fork") and sys.platform != "darwin"


def render(path: str | Path, figure: str, kwargs: dict) -> Path:
    """Draw `viz.figures.<figure>(**kwargs)` and save it as a PNG at `path`."""
    from . import figures

    return figures.save(getattr(figures, figure)(**kwargs), path)


class Plotter:
    """Send figures with `plot`, then `close` to wait for them all (it returns their paths).

    `workers` child processes share the figures in turn, so the last ones, sent when the caller's work is done
    and both cores are free, are drawn side by side.
    """

    def __init__(self, fork: bool = True, workers: int = 2):
        self.paths: list[Path] = []
        self.pending: list[tuple] = []  # jobs drawn at close when there is no child process
        self.children: list[tuple] = []  # (pid, jobs pipe as a file, fd of the errors pipe)
        if fork and can_fork():
            sys.stdout.flush(), sys.stderr.flush()  # a child must not inherit, and later repeat, buffered text
            for _ in range(workers):
                jobs_r, jobs_w = os.pipe()
                done_r, done_w = os.pipe()
                pid = os.fork()
                if pid == 0:
                    for _, jobs, done in self.children:  # an earlier worker's pipes are not this one's
                        jobs.close(), os.close(done)
                    os.close(jobs_w), os.close(done_r)
                    _serve(jobs_r, done_w)  # never returns
                os.close(jobs_r), os.close(done_w)
                self.children.append((pid, os.fdopen(jobs_w, "wb"), done_r))

    def plot(self, path: str | Path, figure: str, **kwargs) -> None:
        """Draw figures.<figure>(**kwargs) into `path`; kwargs hold numbers, lists, strings, numpy arrays."""
        job = (str(path), figure, kwargs)
        self.paths.append(Path(path))
        if not self.children:
            self.pending.append(job)
            return
        jobs = self.children[(len(self.paths) - 1) % len(self.children)][1]
        pickle.dump(job, jobs, pickle.HIGHEST_PROTOCOL)
        jobs.flush()  # the child starts drawing now, not when the buffer fills

    def close(self) -> list[Path]:
        """Wait until every figure is saved; return their paths. A figure that failed raises RuntimeError."""
        if not self.children:
            return [render(*job) for job in self.pending]
        errors = []
        for _, jobs, _ in self.children:
            pickle.dump(None, jobs)
            jobs.close()
        for pid, _, done in self.children:
            try:
                with os.fdopen(done, "rb") as fh:
                    errors += pickle.load(fh)
            except (OSError, EOFError, pickle.UnpicklingError):
                errors.append("a plotter process ended before saving its figures")
            finally:
                os.waitpid(pid, 0)
        self.children = []
        if errors:
            raise RuntimeError("; ".join(errors))
        return self.paths

    def __enter__(self) -> "Plotter":
        return self

    def __exit__(self, *exc) -> None:
        for pid, jobs, done in self.children:  # an error in the caller: stop the children, don't wait for figures
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            jobs.close(), os.close(done)
        self.children = []


def _serve(jobs_fd: int, done_fd: int) -> None:
    """The child: warm matplotlib up, draw each job until None, send back the errors, exit without cleanup."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it kills this child
        from . import figures

        fig, ax = figures.new_figure(1, 1)  # load the fonts and the Agg renderer before the first real figure
        ax.set_title("warm-up")
        fig.canvas.draw()
        errors = []
        with os.fdopen(jobs_fd, "rb") as fh:
            while (job := pickle.load(fh)) is not None:
                try:
                    render(*job)
                except Exception as e:  # report every figure's failure rather than only the first
                    errors.append(f"{job[0]}: {type(e).__name__}: {e}")
        with os.fdopen(done_fd, "wb") as fh:
            pickle.dump(errors, fh)
        code = 0
    finally:
        os._exit(code)  # no atexit handlers, no flushing of buffers inherited from the parent
