"""Named training recipes for ten-digit MNIST, and ensembles / test-time augmentation on top of trained runs.

A recipe is a TrainConfig plus what was measured with it (see docs/recipes.md for the runs, times and hardware).
`default` is also TrainConfig's defaults, so plain `digitlab train` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .errors import ConfigError
from .train.metrics import exact_accuracy


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    config: dict = field(default_factory=dict)   # TrainConfig fields that differ from its defaults
    fast: dict | None = None                     # or: FastConfig fields, for a recipe of the fast path (train/fast.py)
    task: str = "digits"                         # the fast path's task (a Learner recipe names it in `config`)

    def train_config(self, **overrides) -> TrainConfig:
        if self.fast is not None:
            raise ConfigError(f"recipe {self.name!r} runs the fast path, which takes no TrainConfig: use "
                              f"train_recipe (or `digitlab recipe {self.name}`).")
        return TrainConfig(**{**self.config, **{k: v for k, v in overrides.items() if v is not None}})


RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("default", "fastcnn, 10 epochs, one-cycle SGD (Nesterov) lr 0.2, bs 256, wd 5e-4, label smoothing 0.1, "
           "augmentation (TrainConfig's defaults); measured 99.53% mean of 3 seeds, 259-272 s on 2 CPU cores", {}),
    Recipe("best", "fastcnn_deep (two convs per size, 1.15M parameters), 30 epochs of the fast path: one-cycle SGD lr "
           "0.2, bs 256, label smoothing 0.1, augmentation, bf16, CUDA graph and torch.compile on a GPU; measured "
           "99.73-99.75% mean of 5 seeds in three runs, 7.5-7.9 s each on one H200 or H100 (a GPU recipe: hours on 2 "
           "CPU cores)",
           fast=dict(model="fastcnn_deep", epochs=30, compile=True)),
    Recipe("best-m5", "An et al. 2020's M5 (`convnet5x5`: five unpadded 5x5 convs, no pooling, 1.13M parameters), "
           "60 epochs of the fast path with stronger augmentation (shifts up to 3 pixels, rotations up to 15 "
           "degrees); measured 99.68-99.76% (mean 99.72%) for seeds 0-4, 16 s each on one H200; a member of "
           "best-ensemble", fast=dict(model="convnet5x5", epochs=60, aug_shift=3.0, aug_degrees=15.0, compile=True)),
    Recipe("best-strong", "fastcnn_deep, 40 epochs of the fast path with stronger augmentation (3 pixels, 15 "
           "degrees, zoom +-15%); measured 99.73-99.76% (mean 99.74%) for seeds 0-4, 9.9 s each on one H200; a "
           "member of best-ensemble",
           fast=dict(model="fastcnn_deep", epochs=40, aug_shift=3.0, aug_degrees=15.0, aug_scale=0.15, compile=True)),
    Recipe("best-3v7", "the book's 3s and 7s: fastcnn, 40 epochs of the fast path (one-cycle SGD lr 0.2, bs 256, "
           "label smoothing 0.1, augmentation, bf16); measured 0, 1 and 1 errors in 2038 (mean 0.99967) for seeds "
           "0-2, 94-102 s each on 2 CPU cores", fast=dict(epochs=40), task="3v7"),
]}


@dataclass(frozen=True)
class EnsembleRecipe:
    """Several fast recipes, `n_seeds` models of each, every model one equal vote (its test probabilities summed)."""
    name: str
    summary: str
    members: tuple[Recipe, ...]
    n_seeds: int = 5

    def __post_init__(self):
        if any(m.fast is None for m in self.members) or len({m.task for m in self.members}) != 1:
            raise ConfigError(f"ensemble {self.name!r}: its members must be fast recipes of one task.")


ENSEMBLES: dict[str, EnsembleRecipe] = {e.name: e for e in [
    EnsembleRecipe("best-ensemble", "5 seeds each of best, best-m5 and best-strong (15 models, three kinds of "
                   "mistakes); measured 99.81% (19 errors) on one H200, 165 s of training plus three compiles, and "
                   "99.80-99.81% for each 12 of them that leave one seed out",
                   (RECIPES["best"], RECIPES["best-m5"], RECIPES["best-strong"])),
]}


def train_recipe(recipe: Recipe, runs_root="runs", run_name: str | None = None, printer=None, **overrides):
    """Train a recipe (through the Learner, or the fast path for a `fast` recipe) into a new run folder;
    (run folder, summary). `overrides`: seed, epochs, device, data (None keeps the recipe's)."""
    from .runs import new_run_dir, record_run

    run = new_run_dir(runs_root, run_name, f"recipe-{recipe.name}")
    if recipe.fast is None:
        from .train.callbacks import PrintEpochs
        from .train.trainer import fit

        cfg = recipe.train_config(**overrides)
        result = fit(cfg, cbs=[PrintEpochs(printer=printer)] if printer else [])
        record_run(result, cfg, run)
        return run, result.summary
    from .data.tasks import load_task
    from .train.fast import FastConfig, fast_fit, record_fast_run

    given = {k: v for k, v in overrides.items() if v is not None}
    cfg = FastConfig(**{**recipe.fast, **({"epochs": given["epochs"]} if "epochs" in given else {})})
    trainer, (result,) = fast_fit(cfg, (given.get("seed", 42),), load_task(recipe.task, given.get("data")),
                                  given.get("device", "auto"), track=True)
    if printer:
        for h in result.history:
            printer(f"epoch {h['epoch']}: train loss {h['train_loss']:.4f}, accuracy {h['accuracy']:.4f}, "
                    f"{h['seconds']:.1f}s")
    return run, record_fast_run(trainer, result, run)


def train_ensemble(ens: EnsembleRecipe, runs_root="runs", run_name: str | None = None, printer=None, seed: int = 0,
                   epochs: int | None = None, device: str | None = None, data=None,
                   n_seeds: int | None = None) -> tuple[Path, dict]:
    """Train every model of an ensemble recipe, each into its own run folder inside one ensemble folder (one
    trainer per member recipe, reused across its seeds), and score the ensemble from each model's test
    probabilities right after its run; write ensemble.json. (folder, summary). `epochs` shortens every member,
    `n_seeds` sets how many models of each member (seeds `seed`, `seed` + 1, ...)."""
    from .data.tasks import load_task
    from .runs import new_run_dir, write_json
    from .train.fast import FastConfig, fast_fit, record_fast_run

    if n_seeds is not None and n_seeds < 1:
        raise ConfigError(f"an ensemble needs at least one model of each member; got {n_seeds} seeds.")
    folder = new_run_dir(runs_root, run_name, f"ensemble-{ens.name}")
    task_data = load_task(ens.members[0].task, data)
    members, total = [], None

    for recipe in ens.members:
        def keep(trainer, result, recipe=recipe):
            nonlocal total
            run = new_run_dir(folder, f"{recipe.name}-seed{result.seed}")
            record_fast_run(trainer, result, run)
            probs = trainer.test_probs()
            total = probs if total is None else total + probs
            members.append({"recipe": recipe.name, "seed": result.seed, "run": str(run), "accuracy": result.accuracy,
                            "train_seconds": result.seconds})
            if printer:
                printer(f"{recipe.name} seed {result.seed}: accuracy {result.accuracy:.4f}, {result.seconds:.1f}s; "
                        f"ensemble of {len(members)}: {exact_accuracy(total.argmax(1), task_data.valid.labels):.4f}")

        cfg = FastConfig(**{**recipe.fast, **({"epochs": epochs} if epochs else {})})
        fast_fit(cfg, tuple(range(seed, seed + (n_seeds or ens.n_seeds))), task_data, device or "auto", after_run=keep)
    labels = task_data.valid.labels
    preds = total.argmax(1)
    summary = {"ensemble": ens.name, "task": ens.members[0].task, "n_models": len(members),
               "accuracy": exact_accuracy(preds, labels), "errors": int((preds != labels).sum()), "n": len(labels),
               "train_seconds": sum(m["train_seconds"] for m in members), "members": members}
    write_json(folder / "ensemble.json", summary)
    return folder, summary


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join([*RECIPES, *ENSEMBLES])}.")
    return RECIPES[name]


# Test-time augmentation: the image itself and fixed one-pixel shifts (the training shifts are up to 2 pixels).
TTA_SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shift_images(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Move (N, 1, H, W) images dx pixels right and dy pixels down, filling with black (0)."""
    if dx == 0 and dy == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))  # (left, right, top, bottom)
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top:top + h, left:left + w]


@torch.no_grad()
def predict_probs_tta(model: torch.nn.Module, images: torch.Tensor, tta: bool = False, bs: int = 1024) -> torch.Tensor:
    """Class probabilities (N, C) for uint8 images (N, 28, 28); with `tta`, the mean over TTA_SHIFTS."""
    from .data.tasks import to_input
    from .train.losses import softmax

    model.eval()
    device = next(model.parameters()).device
    shifts = TTA_SHIFTS if tta else TTA_SHIFTS[:1]
    out = []
    for i in range(0, len(images), bs):
        xb = to_input(images[i:i + bs].to(device))
        out.append(torch.stack([softmax(model(shift_images(xb, dx, dy)).float()) for dx, dy in shifts]).mean(0).cpu())
    return torch.cat(out)


def ensemble_evaluate(runs: list, tta: bool = False, data_root=None) -> dict:
    """Average the probabilities of several saved models (run folders or .safetensors files) on their task's
    test set, optionally with TTA; report each model's accuracy alone and the ensemble's."""
    from .data.tasks import TASKS, load_task
    from .runs import resolve_model_file
    from .weights import load_model

    if not runs:
        raise ConfigError("give at least one run folder or .safetensors file.")
    models = [load_model(resolve_model_file(r)) for r in runs]
    classes = {tuple(meta["classes"]) for _, meta in models}
    if len(classes) != 1:
        raise ConfigError("the models were trained on different tasks (classes); ensemble models of one task.")
    only = classes.pop()
    task = next((t for t, c in TASKS.items() if c == only), None)
    if task is None:
        raise ConfigError(f"the models' classes {list(only)} are not those of a task ({', '.join(TASKS)}).")
    valid = load_task(task, data_root).valid
    members, total = [], None
    for run, (model, _) in zip(runs, models):
        probs = predict_probs_tta(model, valid.images, tta)
        members.append({"run": str(run), "accuracy": exact_accuracy(probs.argmax(1), valid.labels)})
        total = probs if total is None else total + probs
    preds = total.argmax(1)
    return {"task": task, "tta": tta, "n_models": len(runs), "members": members,
            "accuracy": exact_accuracy(preds, valid.labels),
            "errors": int((preds != valid.labels).sum()), "n": len(valid)}
