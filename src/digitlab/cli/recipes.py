"""Commands for recipes: recipe (train a named recipe), ensemble (average saved models, optionally with TTA),
lr-find (sweep the learning rate and plot loss against it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .app import DataOpt, app, out


@app.command()
def recipe(
    name: str = typer.Argument(..., help="default, best, best-m5, best-strong, best-3v7, or the ensemble "
                               "best-ensemble (see docs/recipes.md)."),
    seed: Optional[int] = typer.Option(None, help="Seed for weights, data order and augmentation."),
    epochs: Optional[int] = typer.Option(None, help="Override the recipe's epochs (e.g. a shorter trial)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Folder that holds run folders."),
    run_name: Optional[str] = typer.Option(None, "--name", help="Run folder name (default: date-time-recipe)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    seeds: Optional[int] = typer.Option(None, help="For an ensemble recipe: models of each member (default 5)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the recipe's TrainConfig as TOML (for "
                                      "`digitlab train --config`) and exit."),
    data: Optional[Path] = DataOpt,
):
    """Train a named recipe and write a run folder (the best-* recipes run the fast path: meant for a GPU). An
    ensemble recipe trains each of its models into a folder of its own (seeds from --seed on) and scores them
    together.

    Example: [bold]digitlab recipe default --seed 1[/]
    """
    from ..errors import ConfigError  # deferred: keeps --help fast
    from ..recipes import ENSEMBLES, get_recipe, train_ensemble, train_recipe  # deferred: keeps --help fast

    if print_config:
        if name in ENSEMBLES:
            raise ConfigError(f"{name!r} is an ensemble of recipes ({', '.join(m.name for m in ENSEMBLES[name].members)}"
                              "); print each member's config.")
        print(get_recipe(name).train_config(seed=seed, epochs=epochs, device=device).to_toml(), end="")
        return 0
    printer = None if as_json else lambda *a, **k: out.print(*a, **k, highlight=False)
    if name in ENSEMBLES:
        folder, s = train_ensemble(ENSEMBLES[name], runs, run_name, printer, seed=seed or 0, epochs=epochs,
                                   device=device, data=str(data) if data else None, n_seeds=seeds)
        if as_json:
            print(json.dumps({"folder": str(folder), **s}, indent=2))
        else:
            out.print(f"ensemble {name}: accuracy {s['accuracy']:.4f} ({s['errors']} errors in {s['n']}) from "
                      f"{s['n_models']} models, {s['train_seconds']:.1f}s of training; folder {folder}",
                      highlight=False)
        return 0
    if seeds is not None:
        raise ConfigError(f"--seeds is for ensemble recipes ({', '.join(ENSEMBLES)}); {name!r} trains one model "
                          "(choose it with --seed).")
    run, s = train_recipe(get_recipe(name), runs, run_name, seed=seed, epochs=epochs, device=device,
                          data=str(data) if data else None, printer=printer)
    if as_json:
        print(json.dumps({"run": str(run), "recipe": name, **s}, indent=2))
    else:
        out.print(f"recipe {name}: accuracy {s['accuracy']:.4f} ({s['errors']} errors in {s['n']}), "
                  f"{s['train_seconds']:.1f}s of training; run folder {run}", highlight=False)
    return 3 if s["status"] == "diverged" else 0


@app.command()
def ensemble(
    runs: list[Path] = typer.Argument(..., help="Run folders or .safetensors files of one task."),
    tta: bool = typer.Option(False, "--tta", help="Also average over one-pixel shifts of each test image."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    data: Optional[Path] = DataOpt,
):
    """Score the average of several saved models' probabilities on the test set (and each model alone).

    Example: [bold]digitlab ensemble runs/best-1 runs/best-2 runs/best-3 --tta[/]
    """
    from ..recipes import ensemble_evaluate  # deferred: keeps --help fast

    res = ensemble_evaluate([str(r) for r in runs], tta, data)
    if as_json:
        print(json.dumps(res, indent=2))
        return
    for m in res["members"]:
        out.print(f"{m['run']}: {m['accuracy']:.4f}{' (tta)' if tta else ''}", highlight=False)
    out.print(f"ensemble of {res['n_models']}{' with tta' if tta else ''}: accuracy {res['accuracy']:.4f} "
              f"({res['errors']} errors in {res['n']})", highlight=False)


@app.command("lr-find")
def lr_find_cmd(
    task: str = typer.Option("digits", help="3v7 or digits."),
    model: str = typer.Option("fastcnn", help="Model name."),
    bs: int = typer.Option(256, help="Batch size."),
    opt: str = typer.Option("sgd", help="sgd, adam or adamw."),
    start_lr: float = typer.Option(1e-6, help="First rate of the sweep."),
    end_lr: float = typer.Option(10.0, help="Last rate of the sweep."),
    num_it: int = typer.Option(100, help="Batches in the sweep (it stops early when the loss diverges)."),
    seed: int = typer.Option(42, help="Seed."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    png: Path = typer.Option(Path("lr_find.png"), "--png", help="Where to write the plot."),
    as_json: bool = typer.Option(False, "--json", help="Print the suggestion and the curve as JSON."),
    data: Optional[Path] = DataOpt,
):
    """Sweep the learning rate exponentially, plot loss against rate, and suggest a rate.

    Example: [bold]digitlab lr-find --model resnet18 --task 3v7 --bs 64[/]
    """
    from ..config import TrainConfig  # deferred: keeps --help fast
    from ..data.tasks import load_task_for  # deferred: keeps --help fast
    from ..train.lr_find import lr_find_figure  # deferred: keeps --help fast
    from ..train.fit import build_learner, resolve_device  # deferred: keeps --help fast
    from ..viz.figures import save  # deferred: keeps --help fast

    cfg = TrainConfig(task=task, model=model, bs=bs, opt=opt, seed=seed, device=device, schedule="constant",
                      data=str(data) if data else None)
    learn = build_learner(cfg, load_task_for(cfg), resolve_device(cfg.device))
    res = learn.lr_find(start_lr, end_lr, num_it)
    path = save(lr_find_figure(res), png)
    if as_json:
        print(json.dumps({"png": str(path), **res.to_dict()}, indent=2))
    else:
        out.print(f"suggested lr {res.suggestion:.2e} (valley); min/10 {res.lr_min:.2e}, steepest "
                  f"{res.lr_steep:.2e}; {len(res.lrs)} batches; plot {path}", highlight=False)
