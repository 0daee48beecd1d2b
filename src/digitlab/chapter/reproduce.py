"""`digitlab reproduce`: the chapter's stages by name, run in one go (two processes where that helps), a table
against the book, and the pictures."""

from __future__ import annotations

import csv
import json
import os
import pickle
import platform
import signal
import sys
from pathlib import Path
from typing import Callable, Iterable

import torch

from ..errors import ConfigError
from ..train.callbacks import Recorder
from ..viz.plotter import Plotter, can_fork, render
from .resnet_stage import stage_resnet18
from .stages import (ChapterData, StageResult, stage_linear_basic_optim, stage_linear_by_hand, stage_linear_learner,
                     stage_linear_sgd, stage_pixel_similarity, stage_simple_net, stage_simple_net_by_hand)

# The book's table, in its order; EXTRA_STAGES run only when named (`--stage NAME`).
STAGES: dict[str, Callable[..., StageResult]] = {
    "pixel_similarity": stage_pixel_similarity,
    "linear_by_hand": stage_linear_by_hand,
    "linear_basic_optim": stage_linear_basic_optim,
    "linear_sgd": stage_linear_sgd,
    "linear_learner": stage_linear_learner,
    "simple_net": stage_simple_net,
}
EXTRA_STAGES: dict[str, Callable[..., StageResult]] = {"simple_net_by_hand": stage_simple_net_by_hand,
                                                       "resnet18": stage_resnet18}

# Rough seconds of each stage on one thread of this 2-core machine: the costliest is the one forked off.
# Only these small stages are split over two processes; others (resnet18) want both cores in one process.
COST = {"pixel_similarity": 0.05, "linear_by_hand": 0.35, "linear_basic_optim": 0.35, "linear_sgd": 0.35,
        "linear_learner": 0.2, "simple_net": 1.5, "simple_net_by_hand": 1.5}


def run_stages(names: Iterable[str] | None = None, seed: int = 42, data: ChapterData | None = None,
               on_result: Callable[[StageResult], None] | None = None, processes: int = 1) -> list[StageResult]:
    """Run the named stages (default: all of STAGES) on the same data and seed, reporting each in order.

    With processes=2 (and fork available) the costliest stage trains in a forked child while this process
    trains the others, each process on one thread: two processes on two threads each would make both many
    times slower here. Every stage seeds itself, so the results are those of one process, in the same order.
    """
    available = {**STAGES, **EXTRA_STAGES}
    names = list(names or STAGES)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(available)}.")
    data = data or ChapterData.load()
    split = processes > 1 and len(names) > 1 and all(n in COST for n in names) and can_fork()
    child, threads = None, torch.get_num_threads()
    try:
        if split:
            torch.set_num_threads(1)  # one core each: this process and the child
            heavy = max(names, key=COST.__getitem__)
            child = (heavy, *fork_stage(available[heavy], data, seed))
        results = []
        for name in names:
            if child and name == child[0]:
                results.append(join_stage(*child[1:]))
                child = None
            else:
                results.append(available[name](data, seed=seed))
            if on_result:
                on_result(results[-1])
        return results
    finally:
        if child:  # an error here: stop the child rather than wait for it
            os.kill(child[1], signal.SIGKILL)
            os.waitpid(child[1], 0)
            os.close(child[2])
        torch.set_num_threads(threads)


def fork_stage(stage: Callable[..., StageResult], data: ChapterData, seed: int) -> tuple[int, int]:
    """Start `stage(data, seed=seed)` in a forked child; returns (pid, fd) for join_stage."""
    r, w = os.pipe()
    sys.stdout.flush(), sys.stderr.flush()  # else the child would inherit buffered text and could print it again
    pid = os.fork()
    if pid == 0:  # the child: train, send ("ok", result) or ("error", exception), exit without cleanup
        code = 1
        try:
            os.close(r)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it kills this child
            torch.set_num_threads(1)  # the parent may have run OpenMP threads, which a forked child cannot reuse
            try:
                message = ("ok", portable(stage(data, seed=seed)))
            except Exception as e:
                message = ("error", e)
            with os.fdopen(w, "wb") as fh:
                try:
                    pickle.dump(message, fh, pickle.HIGHEST_PROTOCOL)
                except Exception as e:  # an exception that does not pickle
                    pickle.dump(("error", RuntimeError(f"{stage.__name__}: {type(e).__name__}: {e}")), fh)
            code = 0
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os._exit(code)
    os.close(w)
    return pid, r


def join_stage(pid: int, fd: int) -> StageResult:
    """Wait for a forked stage; its result, or its exception raised here."""
    try:
        with os.fdopen(fd, "rb") as fh:
            status, value = pickle.load(fh)
    except EOFError:
        status, value = "error", RuntimeError("a forked stage ended without a result (killed, or out of memory?)")
    finally:
        os.waitpid(pid, 0)
    if status == "error":
        raise value
    return restore(value)


def portable(result: StageResult) -> StageResult:
    """A Recorder as its state: pickling its ~2000 one-number tensors one by one would take a tenth of a second."""
    if isinstance(result.extras.get("recorder"), Recorder):
        result.extras["recorder"] = ("Recorder", result.extras["recorder"].state_dict())
    return result


def restore(result: StageResult) -> StageResult:
    """Undo `portable`."""
    packed = result.extras.get("recorder")
    if isinstance(packed, tuple) and packed[0] == "Recorder":
        rec = Recorder()
        rec.load_state_dict(packed[1])
        rec.restored = False  # a finished history, not a checkpoint to continue from
        result.extras["recorder"] = rec
    return result


def table_rows(results: list[StageResult]) -> list[dict]:
    """One plain dict per stage: what the table, the JSON and the CSV show."""
    return [{"stage": r.stage, "accuracy": round(r.accuracy, 4), "book": r.book, "epochs": r.epochs,
             "seconds": round(r.seconds, 3)} for r in results]


def write_tables(rows: list[dict], out: Path, seed: int, processes: int = 1) -> list[Path]:
    """results.json (rows plus the seed and versions) and results.csv."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {"seed": seed, "torch": torch.__version__, "python": platform.python_version(), "processes": processes,
            "threads": 1 if processes > 1 else torch.get_num_threads()}
    (out / "results.json").write_text(json.dumps({"stages": rows, **meta}, indent=2))
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return [out / "results.json", out / "results.csv"]


def plot_jobs(results: list[StageResult], final: bool = True) -> list[tuple[str, str, dict]]:
    """(file name, viz.figures function, its arguments as numpy arrays and numbers) for each picture: the mean 3
    and 7, the linear model's weights as an image, the recorder's curves, the accuracy per epoch. With
    final=False, only the pictures that later stages cannot change (the curves are the last recorder's)."""
    by_stage = {r.stage: r for r in results}
    jobs = []
    pix = by_stage.get("pixel similarity (L1)")
    if pix:
        jobs.append(("mean_3_and_7.png", "images_figure",
                     {"images": [pix.extras["mean3"].numpy(), pix.extras["mean7"].numpy()], "titles": ["mean 3", "mean 7"]}))
    linear = next((r for r in results if r.stage.startswith("linear") and "recorder" in r.extras), None)
    if linear:
        w = linear.extras["model"].weight.detach()[0].view(28, 28).numpy()
        jobs.append(("linear_weights.png", "images_figure",
                     {"images": [w], "titles": ["linear weights"], "cmap": "coolwarm", "size": 3}))
    net = next((r for r in reversed(results) if "recorder" in r.extras), None)
    if final and net:
        rec = net.extras["recorder"]
        jobs.append(("recorder_curves.png", "curves_figure", {"logs": rec.logs, "batch_losses": rec.losses,
                     "metric": rec.metric_names[-1], "title": f"{net.stage}: recorder"}))
    histories = {r.stage: r.history for r in results if r.history}
    if final and histories:
        jobs.append(("accuracy_per_epoch.png", "histories_figure",
                     {"histories": histories, "book": {r.stage: r.book for r in results}}))
    return jobs


def send_plots(plotter: Plotter, results: list[StageResult], out: Path, final: bool = True) -> None:
    """Hand the plotter each picture of `plot_jobs` it has not had yet."""
    for name, figure, kwargs in plot_jobs(results, final):
        if out / name not in plotter.paths:
            plotter.plot(out / name, figure, **kwargs)


def write_plots(results: list[StageResult], out: Path) -> list[Path]:
    """Draw every picture of `plot_jobs` in this process."""
    return [render(out / name, figure, kwargs) for name, figure, kwargs in plot_jobs(results)]
