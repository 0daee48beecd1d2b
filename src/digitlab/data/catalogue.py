"""Known IDX data sets, each recognised by the sha256 of its four files, with its class names and its own mean
and standard deviation; and the loader that tells a known set, a corrupt copy of one, and an unknown set apart.

Any other folder of four IDX files is accepted after the reader's structural checks (magic numbers, 28x28 images,
one label per image, labels 0-9): its classes are its label values, its statistics are measured, and its
checksums go into the run's config so that the run says exactly which data it saw.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .mnist import (FILES, SHIPPED_DATA, SPLIT_FILES, Split, checksum_error, data_dir, digest_bytes, find_file,
                    split_from_bytes)

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")


@dataclass(frozen=True)
class KnownSet:
    """A published IDX data set: its name, what each label stands for, and its training images' statistics."""
    name: str
    classes: tuple            # label value -> class: MNIST's are the digits themselves (ints), others are names
    mean: float               # of the training images scaled to [0, 1]
    std: float
    sha256: dict[str, str]    # file name (without .gz) -> sha256 of the uncompressed bytes
    # The set's default recipe for all its classes: TrainConfig fields over TrainConfig's defaults, chosen on the
    # validation split (docs/recipes.md and docs/datasets.md say on what); a tuple of pairs, the class is frozen
    recipe: tuple = ()
    # what changes where the CPU trains in fp32 (no bf16 units: digitlab.hardware), so the recipe keeps its time
    fp32_cpu: tuple = ()


# MNIST: the fast engine's 20 epochs with test-time shifts (valid 99.65% on a GPU, the best of six that fit 2 CPU
# cores' 5 minutes: benchmarks/results/gpu-validation-nvidia-h200.json, confirmed on 2 CPU cores by
# benchmarks/default_recipe.py)
# On a CPU without bf16 units a step takes 1.8x as long in fp32 (results/precision-*.json): 12 epochs, not 20, fit
# the same 5 minutes there (results/default-recipe-mnist-avx2.json; the GPU sweep's neighbours: 10 epochs, valid
# 99.53%, 15 epochs, valid 99.62%).
MNIST = KnownSet("MNIST", tuple(range(10)), 0.1307, 0.3081, FILES,
                 recipe=(("engine", "fast"), ("epochs", 20), ("tta", True)), fp32_cpu=(("epochs", 12),))
FASHION_MNIST = KnownSet("Fashion-MNIST", FASHION_MNIST_CLASSES, 0.2860, 0.3530, {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}, recipe=(("engine", "fast"), ("epochs", 30), ("aug_flip", True), ("aug_shift", 1.0), ("aug_degrees", 5.0),
           ("aug_scale", 0.05), ("tta", True)))
# Fashion-MNIST: clothes keep their class mirrored and are photographed upright: left-right flips (also among
# the test-time views), milder shifts, rotations and zoom; 30 epochs (valid 93.75% on a GPU, the best of ten:
# results/gpu-validation-*fashion*.json)
CATALOGUE = (MNIST, FASHION_MNIST)
_noted: set[str] = set()  # folders whose "not a known set" note was printed in this process


@dataclass
class IdxDataset:
    """The train and test splits of one folder of IDX files, and what the catalogue knows about them."""
    name: str                 # the known set's name, or "unknown"
    root: Path
    classes: tuple
    mean: float
    std: float
    sha256: dict[str, str]
    splits: dict[str, Split] = field(repr=False)  # "train" and "valid" (the t10k files), as load_mnist names them

    @property
    def known(self) -> bool:
        return self.name != "unknown"

    def info(self) -> dict:
        """What a run records about its data (JSON-able)."""
        return {"name": self.name, "root": str(self.root), "classes": list(self.classes), "mean": self.mean,
                "std": self.std, "sha256": self.sha256}


def identify(root: Path, digests: dict[str, str], paths: dict[str, Path]) -> KnownSet | None:
    """The known set these four files are, None for an unknown set; a corrupt copy of a known set is refused.

    How a corrupt MNIST file is told apart from an unknown set: the four files of a set are published together,
    so when some of them match a known set's checksums and others do not, the others are taken as corrupt copies
    (one flipped byte changes one file, not all four) and refused with MNIST's own message. The shipped folder is
    always MNIST, whatever its files hash to. A set whose four files all differ from every known set is unknown.
    """
    for known in CATALOGUE:
        matching = [name for name in FILES if digests[name] == known.sha256[name]]
        if len(matching) == len(FILES):
            return known
        if matching or (known is MNIST and root.resolve() == SHIPPED_DATA.resolve()):
            bad = next(name for name in FILES if digests[name] != known.sha256[name])
            raise checksum_error(paths[bad], digests[bad], known.sha256[bad])
    return None


def known_set_at(root: str | Path | None) -> KnownSet | None:
    """The known set whose four IDX files are in `root` (None: the shipped MNIST), by their checksums (cached per
    file version, so this is quick after the first look); None for an unknown set, image folders or no data."""
    root = data_dir(root)
    if root.resolve() == SHIPPED_DATA.resolve():
        return MNIST
    try:
        digests = {name: digest_bytes(find_file(root, name))[0] for name in FILES}
    except (DataError, OSError):
        return None
    return next((k for k in CATALOGUE if all(digests[n] == k.sha256[n] for n in FILES)), None)


def default_recipe(root: str | Path | None, task: str = "digits", fp32_cpu: bool = False) -> dict:
    """The TrainConfig fields of the default recipe for all the classes of the data set in `root`: the known
    set's own (with its `fp32_cpu` changes when training runs in fp32 on a CPU), else none (TrainConfig's
    defaults). The book's 3-vs-7 task keeps TrainConfig's defaults."""
    known = known_set_at(root) if task == "digits" else None
    if known is None:
        return {}
    return {**dict(known.recipe), **(dict(known.fp32_cpu) if fp32_cpu else {})}


def load_dataset(root: str | Path | None = None, quiet: bool = False) -> IdxDataset:
    """The IDX data set in `root` ($DIGITLAB_DATA, else the shipped MNIST): checked, identified and parsed.

    An unknown set gets a one-line note on stderr (once per folder and process; `quiet` skips it)."""
    root = data_dir(root)
    paths = {name: find_file(root, name) for name in FILES}
    hashed = {name: digest_bytes(path) for name, path in paths.items()}
    digests = {name: digest for name, (digest, _) in hashed.items()}
    known = identify(root, digests, paths)
    splits = {split: split_from_bytes(*((paths[n], hashed[n][1]) for n in names))
              for split, names in SPLIT_FILES.items()}
    if known is not None:
        return IdxDataset(known.name, root, known.classes, known.mean, known.std, digests, splits)
    train = splits["train"].images.float().div_(255)
    n_classes = int(max(int(s.labels.max()) for s in splits.values() if len(s))) + 1
    if not quiet and str(root) not in _noted:
        _noted.add(str(root))
        print(f"note: {root} is not a known data set ({', '.join(k.name for k in CATALOGUE)}); its files passed the "
              f"structural checks and their sha256 are recorded in the run's config.", file=sys.stderr)
    return IdxDataset("unknown", root, tuple(range(n_classes)), round(train.mean().item(), 4),
                      round(train.std().item(), 4), digests, splits)


def class_of(dataset_classes: tuple, wanted) -> int:
    """The label value of a class given by name or number (as typed on a command line: "Sneaker", "7", 7)."""
    for i, c in enumerate(dataset_classes):
        if c == wanted or str(c) == str(wanted).strip():
            return i
    raise KeyError(wanted)

