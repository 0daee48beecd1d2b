"""Tasks: which classes of a data set a model tells apart. Labels become class indices 0..C-1 in the order of
`classes`.

A data set is a folder of IDX files (MNIST, Fashion-MNIST or any other; data/catalogue.py) or of image folders
(data/folders.py). `digits` (the default task) means every class of the data set; `3v7` the book's 3s and 7s;
`classes` (--classes) any subset, by name or number. MNIST's classes are the digits themselves (ints, so a
prediction's label stays 7); a named set's are its names ("Sneaker").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..errors import ConfigError, DataError
from . import preparation
from .catalogue import MNIST, class_of, load_dataset
from .folders import is_image_folder_dataset, load_image_folders
from .mnist import Split

TASKS: dict[str, tuple[int, ...]] = {"3v7": (3, 7), "digits": tuple(range(10))}


def task_of(classes) -> str:
    """The task whose classes these are (as saved in a model's metadata): 3v7 for the book's pair, else digits
    (every class of its data set; a subset is named by `classes` in the model's config)."""
    return "3v7" if tuple(classes) == TASKS["3v7"] else "digits"


def parse_classes(spec: str | None) -> tuple | None:
    """--classes "Sneaker,Bag" or "3,5,8" -> ("Sneaker", "Bag") or (3, 5, 8); None for none given."""
    if spec is None or not str(spec).strip():
        return None
    names = [c.strip() for c in str(spec).split(",") if c.strip()]
    return tuple(int(c) if c.isdigit() else c for c in names)


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
    classes: tuple                 # what each class index stands for: digits (MNIST) or names ("Sneaker")
    test: Split | None = None
    mean: float = MNIST.mean       # of the data set's training images in [0, 1]: the model's input normalisation
    std: float = MNIST.std
    info: dict | None = None       # the data set: name, folder, classes, sha256 (recorded in the run's config)
    preparation: dict | None = None  # how a picture becomes an input like these (data/preparation.py); None: by classes
    outliers: torch.Tensor | None = None  # uint8 non-digits a model is shown to learn what is not a digit (data/outliers.py)
    valid_is_test: bool = False    # the book's 3-vs-7 split: `valid` holds the test file's images (no choice may read it)

    @property
    def prep(self) -> dict:
        """The preparation saved with a model trained on this data (data/preparation.py)."""
        return self.preparation or preparation.default_for(self.classes)

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


def pixel_stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of uint8 images scaled to [0, 1], exactly, from a histogram (fast)."""
    counts = torch.bincount(images.flatten(), minlength=256).double()
    levels = torch.arange(256, dtype=torch.float64) / 255
    mean = float((counts * levels).sum() / counts.sum())
    var = float((counts * (levels - mean) ** 2).sum() / counts.sum())
    return round(mean, 4), round(var ** 0.5, 4)


def select(dataset_classes: tuple, task: str, classes: tuple | None, where: str) -> list[int]:
    """The label values (indices into the data set's classes) a task or a --classes list picks, in that order."""
    wanted = classes if classes is not None else TASKS[task] if task == "3v7" else tuple(dataset_classes)
    picked = []
    for c in wanted:
        try:
            picked.append(class_of(dataset_classes, c))
        except KeyError:
            how = "--task 3v7 is MNIST's 3s and 7s; pick" if classes is None else "pick"
            raise ConfigError(f"{where} has no class {c!r}; {how} from its classes with --classes: "
                              f"{', '.join(map(str, dataset_classes))}.") from None
    if len(set(picked)) != len(picked):
        raise ConfigError(f"--classes names a class twice: {', '.join(map(str, wanted))}.")
    if len(picked) < 2:
        raise ConfigError(f"--classes picks {len(picked)} class; a classifier needs at least two.")
    return picked


def load_task(task: str = "digits", root: str | Path | None = None, valid_size: int = VALID_SIZE,
              classes: tuple | str | None = None, valid_pct: float | None = None) -> TaskData:
    """The task's splits from a folder of IDX files (default: the shipped MNIST) or of image folders.

    The data set's second split (the t10k files, or an image folder's valid/) is the test split, scored once;
    validation is carved from the training images: `valid_size` of them (stratified, fixed seed; a subset of the
    classes: its share of valid_size; image folders: at most a tenth), 0 for none (train on all: a final model
    once the recipe is fixed). The book's 3-vs-7 task keeps the book's split (valid is MNIST's test 3s and 7s, no
    test split), and so does a single image folder split by `valid_pct` (no test split)."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    classes = parse_classes(classes) if isinstance(classes, str) or classes is None else tuple(classes)
    if is_image_folder_dataset(root):
        source = load_image_folders(root, valid_pct)
        single_folder = source.valid_pct is not None
    else:
        if valid_pct is not None:
            raise ConfigError("--valid-pct splits a single image folder; IDX files have their own test split.")
        source, single_folder = load_dataset(root), False
    info = source.info()
    if info["name"] == "image folders" and task == "3v7" and classes is None:
        extra = sorted(set(source.classes) - set(TASKS["3v7"]), key=str)
        if extra:
            raise DataError(f"{root}: labels {extra} are outside this task's classes {list(TASKS['3v7'])}. "
                            f"Use --task digits, or remove those folders.")
    picked = select(source.classes, task, classes, info["root"] if info["name"] == "unknown" else info["name"])
    names = tuple(source.classes[i] for i in picked)
    splits = {name: to_classes(s, tuple(picked)) for name, s in source.splits.items()}
    for name, s in splits.items():
        if len(s) == 0:
            raise DataError(f"the {name} split has no images of {list(names)}: nothing to train or test on.")
        present = torch.unique(s.labels).numel()
        if present < 2 and name == "train":
            raise DataError(f"the {name} split has a single class: a classifier needs at least two.")
    mean, std = (source.mean, source.std) if hasattr(source, "mean") else pixel_stats(source.splits["train"].images)
    info = {**info, "classes": list(names), "mean": mean, "std": std}
    prep = preparation.for_folder(source.splits["train"].images) if info["name"] == "image folders" else \
        preparation.default_for(source.classes)
    if (task == "3v7" and classes is None) or single_folder:
        return TaskData(splits["train"], splits["valid"], names, mean=mean, std=std, info=info, preparation=prep,
                        valid_is_test=not single_folder)
    # a subset of classes holds out its share of valid_size (two of ten: a fifth); image folders at most a tenth
    n_valid = round(valid_size * len(splits["train"]) / len(source.splits["train"]))
    if info["name"] == "image folders":
        n_valid = min(n_valid, len(splits["train"]) // 10)
    train, valid = stratified_split(splits["train"], n_valid)
    return TaskData(train, valid, names, test=splits["valid"], mean=mean, std=std, info=info, preparation=prep)


def of_digits(classes) -> bool:
    """Whether a model of these classes reads digits (MNIST's classes are the digits themselves, as ints)."""
    return all(isinstance(c, int) for c in classes)


def load_task_for(cfg) -> TaskData:
    """The data a TrainConfig names (its task, data, valid_size, classes and valid_pct, and what it adds to the
    training split: low-resolution scans, non-digits): the one place a config becomes its data, for both engines
    and the commands."""
    data = load_task(cfg.task, cfg.data, cfg.valid_size, cfg.classes, cfg.valid_pct)
    if not (cfg.lowres or cfg.outlier_exposure):
        return data
    if not of_digits(data.classes):
        raise ConfigError("lowres and outlier_exposure are made for models of digits (their non-digits are "
                          f"shapes, letters and clothes); this data set's classes are {', '.join(map(str, data.classes))}.")
    if cfg.lowres:
        from .lowres import low_resolution  # deferred: only these runs prepare pictures

        n = round(cfg.lowres * len(data.train))
        pick = torch.linspace(0, len(data.train) - 1, n).round().long()  # evenly spread: every class its share
        x, y = low_resolution(data.train.images[pick], data.train.labels[pick])
        data = replace(data, train=Split(torch.cat([data.train.images, x]), torch.cat([data.train.labels, y])),
                       info={**data.info, "lowres_scans": len(x)})
    if cfg.outlier_exposure:
        from .outliers import exposure_set  # deferred: only these runs draw and prepare pictures

        outliers, held = exposure_set()
        data = replace(data, outliers=outliers, info={**data.info, "outliers": held})
    return data


def to_input(xb: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1]: what every image model takes."""
    return xb.unsqueeze(1).float().div_(255)


def as_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) or float (N, 28, 28) in [0, 1] (as data.images prepares pictures) -> float (N, 1, 28,
    28) in [0, 1]; (N, 1, 28, 28) floats pass as they are."""
    if images.dtype == torch.uint8:
        return to_input(images)
    return (images.unsqueeze(1) if images.dim() == 3 else images).float()
