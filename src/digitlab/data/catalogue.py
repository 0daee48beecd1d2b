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
    # The set's default recipe for all its classes, by name in the one recipe table (recipe_table.py), chosen on
    # the validation split (docs/recipes.md and docs/datasets.md say on what)
    recipe: str | None = None
    # the recipe where the CPU trains in fp32 (no bf16 units: digitlab.hardware), so that it keeps its time
    fp32_cpu: str | None = None


MNIST = KnownSet("MNIST", tuple(range(10)), 0.1307, 0.3081, FILES,
                 recipe="default-mnist", fp32_cpu="default-mnist-fp32-cpu")
FASHION_MNIST = KnownSet("Fashion-MNIST", FASHION_MNIST_CLASSES, 0.2860, 0.3530, {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}, recipe="default-fashion-mnist")
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


def default_recipe(root: str | Path | None, task: str = "digits", fp32_cpu: bool = False) -> str | None:
    """The name (in recipe_table) of the default recipe for all the classes of the data set in `root`: the known
    set's own (its `fp32_cpu` one when training runs in fp32 on a CPU), else None (TrainConfig's defaults). The
    book's 3-vs-7 task keeps TrainConfig's defaults."""
    known = known_set_at(root) if task == "digits" else None
    if known is None:
        return None
    return known.fp32_cpu if fp32_cpu and known.fp32_cpu else known.recipe


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

