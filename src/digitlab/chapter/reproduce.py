"""`digitlab reproduce`: the chapter's stages 2 to 5 in one run, a table against the book, and the pictures."""

from __future__ import annotations

import csv
import json
import platform
from pathlib import Path
from typing import Callable, Iterable

import torch

from ..errors import ConfigError
from .stages import EXTRA_STAGES, STAGES, ChapterData, StageResult


def run_stages(names: Iterable[str] | None = None, seed: int = 42, data: ChapterData | None = None,
               on_result: Callable[[StageResult], None] | None = None) -> list[StageResult]:
    """Run the named stages (default: all of STAGES) on the same data and seed."""
    available = {**STAGES, **EXTRA_STAGES}
    names = list(names or STAGES)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(available)}.")
    data = data or ChapterData.load()
    results = []
    for name in names:
        results.append(available[name](data, seed=seed))
        if on_result:
            on_result(results[-1])
    return results


def table_rows(results: list[StageResult]) -> list[dict]:
    """One plain dict per stage: what the table, the JSON and the CSV show."""
    return [{"stage": r.stage, "accuracy": round(r.accuracy, 4), "book": r.book, "epochs": r.epochs,
             "seconds": round(r.seconds, 3)} for r in results]


def write_tables(rows: list[dict], out: Path, seed: int) -> list[Path]:
    """results.json (rows plus the seed and versions) and results.csv."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {"seed": seed, "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads()}
    (out / "results.json").write_text(json.dumps({"stages": rows, **meta}, indent=2))
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return [out / "results.json", out / "results.csv"]


def write_plots(results: list[StageResult], out: Path) -> list[Path]:
    """Mean 3 and mean 7, the linear model's weights as an image, the recorder's curves, accuracy per epoch."""
    from ..viz.figures import curves_figure, histories_figure, images_figure, save

    by_stage = {r.stage: r for r in results}
    paths = []
    pix = by_stage.get("pixel similarity (L1)")
    if pix:
        fig = images_figure([pix.extras["mean3"], pix.extras["mean7"]], ["mean 3", "mean 7"])
        paths.append(save(fig, out / "mean_3_and_7.png"))
    linear = next((r for r in results if r.stage.startswith("linear") and "recorder" in r.extras), None)
    if linear:
        w = linear.extras["model"].weight.detach()[0].view(28, 28)
        fig = images_figure([w], ["linear weights"], cmap="coolwarm", size=3)
        paths.append(save(fig, out / "linear_weights.png"))
    net = next((r for r in reversed(results) if "recorder" in r.extras), None)
    if net:
        rec = net.extras["recorder"]
        fig = curves_figure(rec.logs, rec.losses, rec.metric_names[-1])
        fig.suptitle(f"{net.stage}: recorder")
        paths.append(save(fig, out / "recorder_curves.png"))
    histories = {r.stage: r.history for r in results if r.history}
    if histories:
        fig = histories_figure(histories, {r.stage: r.book for r in results})
        paths.append(save(fig, out / "accuracy_per_epoch.png"))
    return paths
