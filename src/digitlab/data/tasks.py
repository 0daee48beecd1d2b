"""Tasks: which digits a model tells apart. Labels become class indices 0..C-1 in the order of `classes`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError, DataError
from .folders import load_folder
from .mnist import Split, load_mnist

TASKS: dict[str, tuple[int, ...]] = {"3v7": (3, 7), "digits": tuple(range(10))}


def task_of(classes) -> str:
    """The task whose classes these are (as saved in a model's metadata)."""
    wanted = tuple(classes)
    for name, task_classes in TASKS.items():
        if task_classes == wanted:
            return name
    raise ConfigError(f"the classes {list(wanted)} are not those of a task ({', '.join(TASKS)}).")


VALID_SIZE = 5000   # images of the ten-digit task's validation split, carved from the 60000 training images
SPLIT_SEED = 0      # the carve is fixed, whatever the training seed: every run validates on the same images


@dataclass
class TaskData:
    """Splits with labels as class indices, and the digit each class stands for.

    `valid` is what per-epoch metrics and every choice read; `test` is scored once, after training. The book's
    3-vs-7 task keeps the book's split: its `valid` is MNIST's test 3s and 7s, and it has no separate test split
    (test is None)."""
    train: Split
    valid: Split
    classes: tuple[int, ...]
    test: Split | None = None

    @property
    def final(self) -> Split:
        """The split a final score reads: the test split, or valid where the task has none."""
        return self.test if self.test is not None else self.valid


def stratified_split(split: Split, n_valid: int, seed: int = SPLIT_SEED) -> tuple[Split, Split]:
    """(rest, valid): `n_valid` images drawn without replacement, each class in proportion to its share (largest
    remainders), by a seeded permutation; both parts keep file order."""
    if not 0 <= n_valid < len(split):
        raise ConfigError(f"valid_size must be between 0 and {len(split) - 1} (the training images), got {n_valid}.")
    g = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(split.labels, return_counts=True)
    share = counts.double() * n_valid / len(split)
    take = share.floor().long()
    take[torch.argsort(share - take, descending=True)[: n_valid - int(take.sum())]] += 1  # largest remainders
    chosen = torch.zeros(len(split), dtype=torch.bool)
    for c, k in zip(classes.tolist(), take.tolist()):
        idx = torch.nonzero(split.labels == c).flatten()
        chosen[idx[torch.randperm(len(idx), generator=g)[:k]]] = True
    return Split(split.images[~chosen], split.labels[~chosen]), Split(split.images[chosen], split.labels[chosen])


def to_classes(split: Split, classes: tuple[int, ...]) -> Split:
    """Keep the images of `classes` (in file order) and relabel them 0..C-1."""
    lookup = torch.full((256,), -1, dtype=torch.int64)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    keep = lookup[split.labels] >= 0
    return Split(split.images[keep], lookup[split.labels[keep]])


def is_image_folder_dataset(root: str | Path | None) -> bool:
    """True for the book's layout: root/train/<digit>/*.png and root/valid/<digit>/*.png."""
    return root is not None and (Path(root) / "train").is_dir() and (Path(root) / "valid").is_dir()


def load_folders(root: Path, classes: tuple[int, ...]) -> dict[str, Split]:
    """Both splits from image folders; a label folder that is not one of the task's classes is an error."""
    splits = {}
    for name in ("train", "valid"):
        split, _ = load_folder(root / name)
        extra = sorted(set(split.labels.tolist()) - set(classes))
        if extra:
            raise DataError(f"{root / name}: labels {extra} are outside this task's classes {list(classes)}. "
                            f"Use --task digits, or remove those folders.")
        splits[name] = split
    return splits


def load_task(task: str = "digits", root: str | Path | None = None, valid_size: int = VALID_SIZE) -> TaskData:
    """The task's splits from the MNIST IDX files, or from image folders root/train/<digit>/ and
    root/valid/<digit>/ when root has that layout.

    From IDX files the ten-digit task validates on `valid_size` training images (stratified, fixed seed) and keeps
    the 10000 test images as its test split; valid_size 0 trains on all 60000 (no validation: for a final model
    once the recipe is fixed). The 3-vs-7 task and image folders keep their valid split and have no test split."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    classes = TASKS[task]
    raw = load_folders(Path(root), classes) if is_image_folder_dataset(root) else load_mnist(root)
    splits = {name: to_classes(s, classes) for name, s in raw.items()}
    for name, s in splits.items():
        if len(s) == 0:
            raise DataError(f"the {name} split has no images of {classes}: nothing to train or test on.")
        present = torch.unique(s.labels).numel()
        if present < 2 and name == "train":
            raise DataError(f"the {name} split has a single class: a classifier needs at least two.")
    if task == "3v7" or is_image_folder_dataset(root):
        return TaskData(splits["train"], splits["valid"], classes)
    train, valid = stratified_split(splits["train"], valid_size)
    return TaskData(train, valid, classes, test=splits["valid"])


def to_input(xb: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1]: what every image model takes."""
    return xb.unsqueeze(1).float().div_(255)
