"""Run folders: everything one `digitlab train` produced, so a run can be inspected, re-scored and served.

runs/<name>/
  config.json       the full config, versions, device, command line
  metrics.csv/json  one row per epoch
  model.safetensors final weights, with architecture, classes and scores in the metadata
  summary.json      the final scores
  interpretation.json  confusion matrix, per-class accuracy, most confused pairs, top losses
  plots/            curves, schedule, confusion matrix, top losses, weights (linear models)
  report.html       all of the above in one self-contained page (images embedded)
"""

from __future__ import annotations

import csv
import json
import platform
import sys
import time
from pathlib import Path

import torch

from .errors import DigitlabError

RUNS_ROOT = Path("runs")
MODEL_FILE = "model.safetensors"


def new_run_dir(root: str | Path = RUNS_ROOT, name: str | None = None, label: str = "run") -> Path:
    """A fresh folder runs/<date>-<time>-<label>, with a suffix if the name is taken."""
    root = Path(root)
    base = name or f"{time.strftime('%Y%m%d-%H%M%S')}-{label}"
    for i in range(1000):
        path = root / (base if i == 0 else f"{base}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise DigitlabError(f"could not create a run folder under {root}: too many named {base}.")


def environment(device: torch.device | str | None = None) -> dict:
    return {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "device": str(device) if device is not None else None, "threads": torch.get_num_threads(),
            "argv": sys.argv, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, indent=2))
    return path


def write_metrics(run: Path, logs: list[dict]) -> None:
    """metrics.json and metrics.csv, one row per epoch."""
    write_json(run / "metrics.json", logs)
    if logs:
        with open(run / "metrics.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(logs[0]))
            writer.writeheader()
            writer.writerows(logs)


def resolve_model_file(run_or_file: str | Path) -> Path:
    """A run folder's model.safetensors, or the file itself."""
    p = Path(run_or_file)
    if p.is_dir():
        p = p / MODEL_FILE
    if not p.exists():
        raise DigitlabError(f"{run_or_file}: no such run folder or weights file. `digitlab runs` lists the runs; "
                            f"`digitlab train` makes one.")
    return p


def read_json_or(path: Path, default):
    """The JSON in path, or default when it is missing or not JSON (a run cut short, a file edited by hand)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def list_runs(root: str | Path = RUNS_ROOT) -> list[dict]:
    """Every run under root with its config and final and best scores, newest first."""
    rows = []
    for run in sorted(Path(root).glob("*/"), reverse=True):
        if not (run / "config.json").exists():
            continue
        config = read_json_or(run / "config.json", {}).get("config", {})
        summary = read_json_or(run / "summary.json", {})
        rows.append({"run": str(run), "task": config.get("task"), "model": config.get("model"),
                     "epochs": config.get("epochs"), "accuracy": summary.get("accuracy"),
                     "best_accuracy": summary.get("best_accuracy"), "valid_loss": summary.get("valid_loss"),
                     "seconds": summary.get("train_seconds"), "status": summary.get("status", "unfinished")})
    return rows


def record_run(result, cfg, run: Path, plots: bool = True) -> Path:
    """Write a finished TrainResult into the run folder: config, metrics, weights, summary, plots, report."""
    from .interpret import Interpretation
    from .report import write_report
    from .weights import save_model

    device = result.summary.get("device")
    write_json(run / "config.json", {"config": cfg.to_dict(), "environment": environment(device),
                                     "params": result.summary.get("params")})
    write_metrics(run, result.recorder.logs)
    meta = {"model": cfg.model, "classes": result.summary["classes"], "task": cfg.task,
            "accuracy": result.summary["accuracy"], "trained": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "epochs": result.summary["epochs_done"], "config": cfg.to_dict()}
    save_model(result.learn.model, run / MODEL_FILE, meta)
    write_json(run / "summary.json", result.summary)
    interp = None
    if result.data is not None:
        valid, classes = result.data.valid, result.summary["classes"]
        interp = (Interpretation(valid.images, valid.labels, result.probs, list(classes)) if result.probs is not None
                  else Interpretation.from_model(result.learn.model, valid, classes))  # fit's final pass, not a second one
        write_json(run / "interpretation.json", interp.to_dict())
    if plots:
        write_run_plots(result, run / "plots", interp, cfg.model)
    write_report(run)
    return run


def write_run_plots(result, folder: Path, interp=None, model_name: str | None = None) -> list[Path]:
    """Loss and accuracy curves, the learning rate per batch, the confusion matrix and top losses, and a linear
    model's weights as one 28x28 image per class."""
    from .viz.figures import curves_figure, new_figure, save, weights_figure

    rec = result.recorder
    paths = [save(curves_figure(rec.logs, rec.losses, "accuracy"), folder / "curves.png")]
    if rec.lrs:
        fig, ax = new_figure(6, 3)
        ax.plot(range(1, len(rec.lrs) + 1), rec.lrs)
        ax.set_xlabel("batch")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
        paths.append(save(fig, folder / "lr_schedule.png"))
    if interp is not None:
        paths.append(save(interp.plot_confusion_matrix(f"confusion matrix (accuracy {interp.accuracy:.4f})"),
                          folder / "confusion_matrix.png"))
        paths.append(save(interp.plot_top_losses(10), folder / "top_losses.png"))
    linear = linear_weight(result.learn.model) if model_name == "linear" else None
    if linear is not None:
        paths.append(save(weights_figure(linear, result.summary["classes"]), folder / "weights.png"))
    return paths


def linear_weight(model) -> torch.Tensor | None:
    """The (C, 784) weight of a model whose only layer with weights is one Linear over the 784 pixels."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if len(layers) == 1 and layers[0].in_features == 28 * 28:
        return layers[0].weight.detach().cpu()
    return None
