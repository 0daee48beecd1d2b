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
from importlib import resources
from pathlib import Path

from collections.abc import Iterable

import torch

from .calibration import ECE_BINS, apply_temperature
from .config import TrainConfig
from .errors import ConfigError, DigitlabError
from .interpret import Interpretation
from .ood import for_record
from .report import write_report
from .train import distributed
from .train.callback import Callback
from .train.fit import fit
from .train.result import TrainResult
from .train.runtime import resolve_device
from .train.tensorboard import RunWriter, TensorBoardLog, writer_or_none
from .viz.figures import curves_figure, new_figure, reliability_figure, save, weights_figure
from .weights import save_model

RUNS_ROOT = Path("runs")
MODEL_FILE = "model.safetensors"
PRETRAINED = "digits-cnn.safetensors"  # the model shipped in digitlab/pretrained/
TENSORBOARD_DIR = "tensorboard"


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


# The final scores a model file carries in its metadata (from the run's summary): a model card checks against them
SCORE_KEYS = ("valid_accuracy", "valid_errors", "n_valid", "test_accuracy", "test_errors", "n_test", "ece",
              "ece_calibrated", "nll", "nll_calibrated")


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


def shipped_model_file() -> Path:
    """The small model shipped inside the package (digitlab/pretrained/), found through importlib.resources."""
    path = Path(str(resources.files("digitlab") / "pretrained" / PRETRAINED))  # a real file for any normal install
    if not path.is_file():
        raise DigitlabError(f"no shipped model at {path}: the installed package is incomplete (reinstall digitlab), "
                            f"or give a run folder or a .safetensors file, e.g. runs/<run>.")
    return path


def resolve_model_file(run_or_file: str | Path | None) -> Path:
    """A run folder's model.safetensors, or the file itself; None: the shipped model."""
    if run_or_file is None:
        return shipped_model_file()
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
                     "valid_accuracy": summary.get("valid_accuracy"), "test_accuracy": summary.get("test_accuracy"),
                     "best_accuracy": summary.get("best_accuracy"), "valid_loss": summary.get("valid_loss"),
                     "seconds": summary.get("train_seconds"), "status": summary.get("status", "unfinished")})
    return rows


def record_run(result: TrainResult, run: Path, plots: bool = True, live: RunWriter | None = None) -> Path:
    """Write a finished run of either engine into its folder: config (JSON and TOML), metrics, weights, summary,
    the interpretation of its final predictions, plots, TensorBoard event files and the report. `live` is the
    writer that logged the run while it trained (otherwise its history is written to TensorBoard now)."""
    cfg = result.config
    dataset = result.data.info if result.data is not None else None  # name, folder, classes, sha256 of its files
    write_config(run, cfg, {"environment": environment(result.summary["device"]), "params": result.summary["params"],
                            "dataset": dataset})
    write_metrics(run, result.history)
    meta = {"model": cfg.model, "classes": result.summary["classes"], "task": cfg.task,
            "accuracy": result.summary["accuracy"], "trained": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "epochs": result.summary["epochs_done"], "config": cfg.to_dict(),
            "temperature": result.summary["temperature"], "dataset": dataset,  # calibrates predict's and serve's probabilities
            "scores": {k: result.summary.get(k) for k in SCORE_KEYS},  # what a model card quotes
            "precision": result.summary.get("precision"), "machine": result.summary.get("machine"),  # trained how, where
            "preparation": result.data.prep if result.data is not None else None}  # how predict reads a picture
    ood_meta, ood_stats = for_record(result.model, result.data)  # the "not a digit" detector (digitlab.ood)
    save_model(result.model, run / MODEL_FILE, {**meta, **ood_meta}, extra=ood_stats)
    write_json(run / "summary.json", result.summary)
    interp = None
    if result.data is not None and result.probs is not None:  # the final scoring pass, not a second one
        final = result.data.final
        interp = Interpretation(final.images, final.labels, result.probs, list(result.summary["classes"]))
        write_json(run / "interpretation.json", interp.to_dict())
    figures = run_figures(result, interp) if plots else {}
    for name, fig in figures.items():
        save(fig, run / "plots" / f"{name}.png")
    write_tensorboard(result, run, figures, live)
    write_report(run)
    return run


def write_config(run: Path, cfg: TrainConfig, extra: dict) -> None:
    """config.json (the config with the environment it ran in) and config.toml (the config alone, to re-run:
    `digitlab train --config RUN/config.toml`)."""
    write_json(run / "config.json", {"config": cfg.to_dict(), **extra})
    (run / "config.toml").write_text(cfg.to_toml())


def write_tensorboard(result: TrainResult, run: Path, figures: dict, live: RunWriter | None) -> None:
    """The run's hyperparameters with its final metrics, and its figures, in run/tensorboard (with the whole
    history too when nothing logged it live)."""
    writer = live or writer_or_none(run / TENSORBOARD_DIR)
    if writer is None:
        return
    if live is None:
        writer.history(result.history, result.batch_losses, result.lrs)
    s = result.summary
    writer.hparams(result.config.to_dict(), {k: s[k] for k in ("accuracy", "valid_accuracy", "test_accuracy",
                                                                "valid_loss", "ece", "ece_calibrated", "train_seconds")})
    for name, fig in figures.items():
        writer.figure(name, fig)
    writer.close()


def run_figures(result: TrainResult, interp: Interpretation | None = None) -> dict:
    """name -> figure: loss and accuracy curves, the learning rate per batch, the confusion matrix and top losses,
    and a linear model's weights as one 28x28 image per class."""
    figures = {"curves": curves_figure(result.history, result.batch_losses, "accuracy")}
    if result.lrs:
        fig, ax = new_figure(6, 3)
        ax.plot(range(1, len(result.lrs) + 1), result.lrs)
        ax.set_xlabel("batch")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
        figures["lr_schedule"] = fig
    if interp is not None:
        figures["confusion_matrix"] = interp.plot_confusion_matrix(f"confusion matrix (accuracy {interp.accuracy:.4f})")
        figures["top_losses"] = interp.plot_top_losses(10)
        calibrated = apply_temperature(interp.probs, result.summary["temperature"])
        figures["reliability"] = reliability_figure({"as trained": interp.probs, "temperature-scaled": calibrated},
                                                    interp.actual, ECE_BINS)
    linear = linear_weight(result.model) if result.config.model == "linear" else None
    if linear is not None:
        figures["weights"] = weights_figure(linear, result.summary["classes"])
    return figures


def linear_weight(model) -> torch.Tensor | None:
    """The (C, 784) weight of a model whose only layer with weights is one Linear over the 784 pixels."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if len(layers) == 1 and layers[0].in_features == 28 * 28:
        return layers[0].weight.detach().cpu()
    return None


def start_run(cfg: TrainConfig, runs_root: str | Path = RUNS_ROOT, name: str | None = None) -> Path:
    """Create the run folder and write config.json first, so that an interrupted run can be resumed."""
    run = new_run_dir(runs_root, name, f"{cfg.task}-{cfg.model}")
    write_config(run, cfg, {"environment": environment(resolve_device(cfg.device))})
    return run


def run_config(run: str | Path) -> TrainConfig:
    """The config a run folder was started with."""
    path = Path(run) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{run}: not a run folder (no config.json). `digitlab runs` lists the runs.")
    return TrainConfig.from_dict(json.loads(path.read_text())["config"])


def train_run(cfg: TrainConfig | None = None, runs_root: str | Path = RUNS_ROOT, name: str | None = None,
              resume: str | Path | None = None, checkpoint_every: int | None = None,
              cbs: Iterable[Callback] = (), plots: bool = True) -> tuple[Path, TrainResult]:
    """`digitlab train`: a new run folder (or, with `resume`, an interrupted one continued exactly), training
    with checkpoints, then the run record (metrics, weights, plots, report). (run folder, result)

    Under torchrun every process trains; only rank 0 writes, and only rank 0 runs the callbacks in `cbs`
    (progress display). Other ranks learn the run folder from rank 0.
    """
    rank, world_size, _ = distributed.world()
    if resume is not None:
        run, cfg = Path(resume), run_config(resume)
    else:
        run = start_run(cfg, runs_root, name) if rank == 0 else None
    try:
        if world_size > 1 and resume is None:
            run = Path(distributed.broadcast_from_rank0(str(run) if run else "", resolve_device(cfg.device)))
        live = writer_or_none(run / TENSORBOARD_DIR) if rank == 0 else None
        cbs = [*cbs, *([TensorBoardLog(live)] if live is not None else [])] if rank == 0 else []
        result = fit(cfg, cbs, run_dir=run, resume=resume is not None, checkpoint_every=checkpoint_every)
        if rank == 0:
            record_run(result, run, plots, live)
    finally:
        distributed.shutdown()
    return run, result

