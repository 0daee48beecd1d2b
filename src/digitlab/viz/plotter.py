"""A plotter process: figures drawn beside the caller's work instead of after it.

`Plotter()` forks a worker that imports matplotlib at once and forks the other workers from there (one import
for all); each then draws the figures it is sent. Made before torch is imported, a worker needs no torch (jobs
carry numbers and numpy arrays), so its start costs the caller only the fork, and matplotlib's half-second import
overlaps the caller's own. Where fork is missing or unsafe (Windows, macOS) the same calls draw in this process
when `close` is called.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
from pathlib import Path

from . import figures


def can_fork() -> bool:
    """True where os.fork is available and safe to use in a process with threads (Linux and the BSDs)."""
    return hasattr(os, "fork") and sys.platform != "darwin"


def render(path: str | Path, figure: str, kwargs: dict) -> Path:
    """Draw `viz.figures.<figure>(**kwargs)` and save it as a PNG at `path`."""
    return figures.save(getattr(figures, figure)(**kwargs), path)


class Plotter:
    """Send figures with `plot`, then `close` to wait for them all (it returns their paths).

    `workers` child processes share the figures in turn, so the last ones, sent when the caller's work is done
    and both cores are free, are drawn side by side.
    """

    def __init__(self, fork: bool = True, workers: int = 2):
        self.paths: list[Path] = []
        self.pending: list[tuple] = []  # jobs drawn at close when there is no child process
        self.children: list[tuple] = []  # (jobs pipe as a file, fd of the errors pipe), one per worker
        self.pid = 0  # the first worker; it forks the others, so they all share one matplotlib import
        if fork and can_fork():
            sys.stdout.flush(), sys.stderr.flush()  # a child must not inherit, and later repeat, buffered text
            pipes = [(*os.pipe(), *os.pipe()) for _ in range(workers)]  # (jobs_r, jobs_w, done_r, done_w) each
            pid = os.fork()
            if pid == 0:
                _zygote(pipes)  # never returns
            for jobs_r, jobs_w, done_r, done_w in pipes:
                os.close(jobs_r), os.close(done_w)
                self.children.append((os.fdopen(jobs_w, "wb"), done_r))
            self.pid = pid

    def plot(self, path: str | Path, figure: str, **kwargs) -> None:
        """Draw figures.<figure>(**kwargs) into `path`; kwargs hold numbers, lists, strings, numpy arrays."""
        job = (str(path), figure, kwargs)
        self.paths.append(Path(path))
        if not self.children:
            self.pending.append(job)
            return
        jobs = self.children[(len(self.paths) - 1) % len(self.children)][0]
        try:
            pickle.dump(job, jobs, pickle.HIGHEST_PROTOCOL)
            jobs.flush()  # the child starts drawing now, not when the buffer fills
        except BrokenPipeError:  # the worker is gone: `close` reports it rather than failing the caller's work now
            pass

    def close(self) -> list[Path]:
        """Wait until every figure is saved; return their paths. A figure that failed raises RuntimeError."""
        if not self.children:
            return [render(*job) for job in self.pending]
        errors = []
        for jobs, _ in self.children:
            try:
                pickle.dump(None, jobs)
                jobs.close()
            except BrokenPipeError:  # the worker is gone; reading its errors pipe below says so
                with contextlib.suppress(OSError):
                    jobs.close()
        for _, done in self.children:
            try:
                with os.fdopen(done, "rb") as fh:
                    errors += pickle.load(fh)
            except (OSError, EOFError, pickle.UnpicklingError):
                errors.append("a plotter process ended before saving its figures")
        with contextlib.suppress(ChildProcessError):  # already reaped (by a caller that killed it)
            os.waitpid(self.pid, 0)  # the first worker reaps the others before it exits
        self.children = []
        if errors:
            raise RuntimeError("; ".join(errors))
        return self.paths

    def __enter__(self) -> "Plotter":
        return self

    def __exit__(self, *exc) -> None:
        if self.children:  # an error in the caller: stop the workers, don't wait for figures
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            for jobs, done in self.children:  # the other workers read the end of their jobs and exit
                jobs.close(), os.close(done)
        self.children = []


def _zygote(pipes: list[tuple[int, int, int, int]]) -> None:
    """The first worker: import matplotlib and warm it up once, fork the other workers from that state (each
    starts ready at no cost in CPU), serve the first share of the jobs, and reap the others."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it kills the workers
        for _, jobs_w, done_r, _ in pipes:  # the parent's ends
            os.close(jobs_w), os.close(done_r)
        fig, ax = figures.new_figure(1, 1)  # load the fonts and the Agg renderer before the first real figure
        ax.set_title("warm-up")
        fig.canvas.draw()
        del fig, ax
        others = []
        for i in range(1, len(pipes)):
            pid = os.fork()
            if pid == 0:
                for j, (jobs_r, _, _, done_w) in enumerate(pipes):
                    if j != i:
                        os.close(jobs_r), os.close(done_w)
                _serve(*_ends(pipes[i]))  # never returns
            others.append(pid)
        for jobs_r, _, _, done_w in pipes[1:]:
            os.close(jobs_r), os.close(done_w)
        try:
            _serve(*_ends(pipes[0]), exit=False)
        finally:
            for pid in others:
                os.waitpid(pid, 0)
        code = 0
    finally:
        os._exit(code)


def _ends(pipe: tuple[int, int, int, int]) -> tuple[int, int]:
    """A worker's ends of its pipes: where it reads jobs, where it writes its errors."""
    return pipe[0], pipe[3]


def _serve(jobs_fd: int, done_fd: int, exit: bool = True) -> None:
    """A worker: draw each job until None (or the end of the pipe), send back the errors; then exit without
    cleanup (no atexit handlers, no flushing of buffers inherited from the parent) unless `exit` is False."""
    code = 1
    try:
        errors = []
        with os.fdopen(jobs_fd, "rb") as fh:
            while True:
                try:
                    job = pickle.load(fh)
                except EOFError:  # the parent closed the pipe without a last None: it is stopping us
                    job = None
                if job is None:
                    break
                try:
                    render(*job)
                except Exception as e:  # report every figure's failure rather than only the first
                    errors.append(f"{job[0]}: {type(e).__name__}: {e}")
        with os.fdopen(done_fd, "wb") as fh:
            pickle.dump(errors, fh)
        code = 0
    finally:
        if exit:
            os._exit(code)
