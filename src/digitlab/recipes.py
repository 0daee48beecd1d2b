"""Named training recipes to run: each is a TrainConfig (the fields that differ from its defaults, from the one
table, recipe_table.py) that either engine runs; and ensembles of fast recipes. `default` is the data set's
default recipe (named by data.catalogue), so plain `digitlab train` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import inference, recipe_table
from .config import TrainConfig
from .data.tasks import load_task, task_of
from .errors import ConfigError
from .runs import new_run_dir, record_run, resolve_model_file, write_json
from .train.fast import fast_fit
from .train.fit import EpochLogs, fit
from .weights import load_model


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    config: dict = field(default_factory=dict)   # TrainConfig fields that differ from its defaults
    by_data_set: bool = False  # the data set's own default recipe (named by data.catalogue), as `train` runs

    def train_config(self, **overrides) -> TrainConfig:
        """The recipe's config; overrides that are not None replace its fields (seed, epochs, device, data)."""
        if self.by_data_set:
            return TrainConfig.resolve(None, **self.config, **overrides)
        return TrainConfig(**self.config).replace(**overrides)


RECIPES: dict[str, Recipe] = {
    "default": Recipe("default", "the data set's default recipe, as plain `digitlab train` runs it (default-mnist, "
                      "default-mnist-fp32-cpu where the CPU trains in fp32, default-fashion-mnist)", by_data_set=True),
    **{name: Recipe(name, summary, config) for name, (summary, config) in recipe_table.RECIPES.items()}}


@dataclass(frozen=True)
class EnsembleRecipe:
    """Several fast recipes, `n_seeds` models of each, every model one equal vote (its test probabilities summed)."""
    name: str
    summary: str
    members: tuple[Recipe, ...]
    n_seeds: int = 5

    def __post_init__(self):
        configs = [m.train_config() for m in self.members]
        if any(c.engine != "fast" for c in configs) or len({c.task for c in configs}) != 1:
            raise ConfigError(f"ensemble {self.name!r}: its members must be fast recipes of one task.")


ENSEMBLES: dict[str, EnsembleRecipe] = {e.name: e for e in [
    EnsembleRecipe("best-ensemble", "5 seeds each of best, best-m5 and best-strong (15 models, three kinds of "
                   "mistakes); a GPU recipe", (RECIPES["best"], RECIPES["best-m5"], RECIPES["best-strong"])),
]}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join([*RECIPES, *ENSEMBLES])}.")
    return RECIPES[name]


def epoch_line(log: dict) -> str:
    """One epoch's results as a line of text."""
    return "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in log.items())


def train_recipe(recipe: Recipe, runs_root="runs", run_name: str | None = None,
                 printer: Callable[[str], None] | None = None, **overrides) -> tuple[Path, dict]:
    """Train a recipe on its engine into a new run folder; (run folder, summary). `overrides`: seed, epochs,
    device, data (None keeps the recipe's)."""
    cfg = recipe.train_config(**overrides)
    run = new_run_dir(runs_root, run_name, f"recipe-{recipe.name}")
    result = fit(cfg, [EpochLogs(lambda log: printer(epoch_line(log)))] if printer else [])
    record_run(result, run)
    return run, result.summary


def train_ensemble(ens: EnsembleRecipe, runs_root="runs", run_name: str | None = None,
                   printer: Callable[[str], None] | None = None, seed: int = 0, epochs: int | None = None,
                   device: str | None = None, data=None, n_seeds: int | None = None) -> tuple[Path, dict]:
    """Train every model of an ensemble recipe, each into its own run folder inside one ensemble folder (one
    trainer per member recipe, reused across its seeds), and score the ensemble from each model's test
    probabilities right after its run; write ensemble.json. (folder, summary). `epochs` shortens every member,
    `n_seeds` sets how many models of each member (seeds `seed`, `seed` + 1, ...)."""
    if n_seeds is not None and n_seeds < 1:
        raise ConfigError(f"an ensemble needs at least one model of each member; got {n_seeds} seeds.")
    folder = new_run_dir(runs_root, run_name, f"ensemble-{ens.name}")
    first = ens.members[0].train_config()
    task_data = load_task(first.task, data, first.valid_size)
    labels = task_data.final.labels
    members, votes = [], []

    for recipe in ens.members:
        def keep(trainer, result, recipe=recipe):
            run = record_run(result, new_run_dir(folder, f"{recipe.name}-seed{result.seed}"), plots=False)
            votes.append(result.probs)
            members.append({"recipe": recipe.name, "seed": result.seed, "run": str(run), "accuracy": result.accuracy,
                            "train_seconds": result.seconds})
            if printer:
                so_far = inference.score(inference.ensemble_probs(votes), labels)["accuracy"]
                printer(f"{recipe.name} seed {result.seed}: accuracy {result.accuracy:.4f}, {result.seconds:.1f}s; "
                        f"ensemble of {len(members)}: {so_far:.4f}")

        cfg = recipe.train_config(epochs=epochs)
        fast_fit(cfg, tuple(range(seed, seed + (n_seeds or ens.n_seeds))), task_data, device or "auto", after_run=keep)
    scored = inference.score(inference.ensemble_probs(votes), labels)
    summary = {"ensemble": ens.name, "task": task_of(task_data.classes), "n_models": len(members),
               "accuracy": scored["accuracy"], "errors": scored["errors"], "n": scored["n"],
               "train_seconds": sum(m["train_seconds"] for m in members), "members": members}
    write_json(folder / "ensemble.json", summary)
    return folder, summary


def ensemble_evaluate(runs: list, tta: bool = False, data_root=None) -> dict:
    """Average the probabilities of several saved models (run folders or .safetensors files) on their task's
    test set, optionally with TTA; report each model's accuracy alone and the ensemble's."""
    if not runs:
        raise ConfigError("give at least one run folder or .safetensors file.")
    models = [load_model(resolve_model_file(r)) for r in runs]
    classes = {tuple(meta["classes"]) for _, meta in models}
    if len(classes) != 1:
        raise ConfigError("the models were trained on different tasks (classes); ensemble models of one task.")
    task = task_of(classes.pop())
    test = load_task(task, data_root).final  # the test split (the 3-vs-7 task: the book's valid)
    members, votes = [], []
    for run, (model, _) in zip(runs, models):
        votes.append(inference.class_probs(model, test.images, tta=tta))
        members.append({"run": str(run), "accuracy": inference.score(votes[-1], test.labels)["accuracy"]})
    scored = inference.score(inference.ensemble_probs(votes), test.labels)
    return {"task": task, "tta": tta, "n_models": len(runs), "members": members, "accuracy": scored["accuracy"],
            "errors": scored["errors"], "n": scored["n"]}
