"""Commands for training and using models: train, evaluate, runs, predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .app import DataOpt, app, out


@app.command()
def train(
    task: Optional[str] = typer.Option(None, help="3v7 (the book's 3s and 7s) or digits (all ten). [default: digits]"),
    model: Optional[str] = typer.Option(None, help="Model name: linear, simple_net, mlp, cnn, ... [default: cnn]"),
    epochs: Optional[int] = typer.Option(None, help="Passes over the training set."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (one-cycle) or the constant rate."),
    bs: Optional[int] = typer.Option(None, help="Batch size."),
    opt: Optional[str] = typer.Option(None, help="sgd, adam or adamw."),
    mom: Optional[float] = typer.Option(None, help="SGD momentum / Adam beta1."),
    wd: Optional[float] = typer.Option(None, help="Weight decay."),
    schedule: Optional[str] = typer.Option(None, help="one_cycle or constant."),
    label_smoothing: Optional[float] = typer.Option(None, help="Cross-entropy label smoothing."),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help="Random shifts, rotations and scaling of training batches."),
    seed: Optional[int] = typer.Option(None, help="Seed for weights, data order and augmentation."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Folder that holds run folders."),
    name: Optional[str] = typer.Option(None, help="Run folder name (default: date-time-task-model)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    data: Optional[Path] = DataOpt,
):
    """Train a model and write a run folder (config, metrics, weights, plots). Unset options take the
    defaults of digitlab.config.TrainConfig (the default recipe).

    Example: [bold]digitlab train --task digits --model cnn --epochs 3 --lr 0.05[/]
    """
    from ..config import TrainConfig
    from ..runs import new_run_dir, record_run
    from ..train.callbacks import PrintEpochs
    from ..train.trainer import fit

    given = dict(task=task, model=model, epochs=epochs, lr=lr, bs=bs, opt=opt, mom=mom, wd=wd, schedule=schedule,
                 label_smoothing=label_smoothing, augment=augment, seed=seed, device=device,
                 data=str(data) if data else None)
    cfg = TrainConfig(**{k: v for k, v in given.items() if v is not None})
    run = new_run_dir(runs, name, f"{cfg.task}-{cfg.model}")
    result = fit(cfg, cbs=[] if as_json else [PrintEpochs(printer=lambda *a, **k: out.print(*a, **k, highlight=False))])
    record_run(result, cfg, run)
    s = result.summary
    if as_json:
        print(json.dumps({"run": str(run), **s}, indent=2))
    else:
        out.print(f"accuracy {s['accuracy']:.4f} ({s['errors']} errors in {s['n_valid']}) after "
                  f"{s['epochs_done']} epochs, {s['train_seconds']:.1f}s; run folder {run}", highlight=False)
    return 3 if s["status"] == "diverged" else 0


@app.command()
def evaluate(run: Path = typer.Argument(..., help="A run folder or a .safetensors file."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON."),
             data: Optional[Path] = DataOpt):
    """Re-score a saved model on the test set of its task.

    Example: [bold]digitlab evaluate runs/20261126-120000-digits-cnn[/]
    """
    from ..data.tasks import TASKS, load_task
    from ..predict import Classifier
    from ..train.trainer import evaluate as score

    clf = Classifier.load(run)
    task = clf.meta.get("task") or next(t for t, c in TASKS.items() if list(c) == clf.classes)
    res = score(clf.model, load_task(task, data).valid)
    summary = {"task": task, "accuracy": res["accuracy"], "errors": res["errors"], "n": res["n"], "loss": res["loss"]}
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        out.print(f"{task}: accuracy {res['accuracy']:.4f} ({res['errors']} errors in {res['n']}), loss "
                  f"{res['loss']:.4f}", highlight=False)


@app.command("runs")
def list_runs_cmd(runs: Path = typer.Option(Path("runs"), "--runs", help="Folder that holds run folders."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the runs with their task, model and best scores.

    Example: [bold]digitlab runs[/]
    """
    from rich.table import Table

    from ..runs import list_runs

    rows = list_runs(runs)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"runs in {runs}")
    for col in ("run", "task", "model", "epochs", "accuracy", "seconds", "status"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["run"], str(r["task"]), str(r["model"]), str(r["epochs"]),
                      f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "-",
                      f"{r['seconds']:.1f}" if r["seconds"] is not None else "-", r["status"])
    out.print(table)


@app.command()
def predict(run: Path = typer.Argument(..., help="A run folder or a .safetensors file."),
            images: list[Path] = typer.Argument(..., help="PNG, JPEG or WebP files of digits, any size or colour."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON: one object per image.")):
    """Predict the digit in each image (preprocessed like MNIST: grey, inverted if needed, cropped, centred).

    Example: [bold]digitlab predict runs/my-run my_digit.png[/]
    """
    from ..errors import DigitlabError
    from ..predict import Classifier

    clf = Classifier.load(run)
    results, failed = [], 0
    for path in images:
        try:
            p = clf.predict([path])[0]
            results.append({"image": str(path), **p.to_dict()})
        except DigitlabError as e:
            failed += 1
            results.append({"image": str(path), "error": str(e)})
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                out.print(f"{r['image']}: [red]{r['error']}[/]", highlight=False)
            else:
                top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
                out.print(f"{r['image']}: [bold]{r['label']}[/]  (" + ", ".join(f"{k}: {v:.3f}" for k, v in top) + ")",
                          highlight=False)
    return 2 if failed else 0
