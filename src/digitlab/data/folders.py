"""Image folders as torchvision's ImageFolder and fastai's from_folder read them, and the book's export.

A data set is root/train/<class>/* and root/valid/<class>/*, or root/<class>/* split by a seeded valid_pct; any
class names (sorted as ImageFolder sorts them); PNG, JPEG, WebP (and BMP, GIF, TIFF); grey or colour; any size,
squashed to 28x28. Images are decoded once and cached as a tensor file keyed by the folder's contents (every
file's path, size and mtime), so the next run of the same folder loads in a fraction of a second.

Export writes each image as `<index in the IDX file>.png` (zero-padded), so reading the folders back in sorted
order gives exactly the tensors of the IDX path.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, DataError
from ..fileio import atomic_write
from .mnist import Split, cache_dir, load_mnist

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SIZE = (28, 28)          # (h, w) every image is squashed to: the models' input
DEFAULT_VALID_PCT = 0.2  # a single folder's share held out for validation, as fastai's from_folder
CACHE_VERSION = 1        # bump when decoding changes, so old cache files are not read


def export_split(split: Split, out: str | Path, indices: torch.Tensor | None = None) -> dict[int, int]:
    """Write each image of `split` to out/<label>/<index>.png; return the count per label."""
    out = Path(out)
    indices = torch.arange(len(split)) if indices is None else indices
    counts: dict[int, int] = {}
    for label in split.labels.unique().tolist():
        (out / str(label)).mkdir(parents=True, exist_ok=True)
    for img, label, idx in zip(split.images.numpy(), split.labels.tolist(), indices.tolist()):
        Image.fromarray(img, mode="L").save(out / str(label) / f"{idx:05d}.png", optimize=False, compress_level=1)
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


def load_folder(path: str | Path, skip_bad: bool = False) -> tuple[Split, list[str]]:
    """One folder of class folders (<path>/<class>/*) as a Split, labels indexing the sorted class names, images in
    file-name order (see decode_split); no cache.

    An unreadable image is an error, or with `skip_bad` is skipped and returned as a warning."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder. Give a folder holding one sub-folder per class (e.g. 3/ and 7/).")
    folders = class_folders(root)
    if not folders:
        raise DataError(f"{root}: no label folders inside. Expected one sub-folder per class, e.g. {root}/3/.")
    classes = [d.name for d in folders]
    files = {d.name: image_files(d) for d in folders}
    skipped: list[str] = []
    split = decode_split(files, classes, skipped)
    if skipped and not skip_bad:
        raise DataError(f"{skipped[0]} (not a readable image). Remove it, or pass skip_bad=True to skip such files.")
    counts = torch.bincount(split.labels, minlength=len(classes))
    for i, d in enumerate(folders):
        if counts[i] == 0:
            raise DataError(f"{d}: empty class folder (no readable images). Add images or remove the folder.")
    return split, skipped


def export_dataset(dest: str | Path, task: str = "3v7", root=None) -> dict[str, dict[int, int]]:
    """Write train/ and valid/ image folders for '3v7' (the book's MNIST_SAMPLE) or 'digits' (all ten)."""
    if task not in ("3v7", "digits"):
        raise DataError(f"unknown task {task!r}; use 3v7 or digits.")
    counts = {}
    for name, split in load_mnist(root).items():
        keep = torch.isin(split.labels, torch.tensor([3, 7])) if task == "3v7" else torch.ones(len(split), dtype=torch.bool)
        idx = torch.nonzero(keep).flatten()
        counts[name] = export_split(Split(split.images[idx], split.labels[idx]), Path(dest) / name, idx)
    return counts


@dataclass
class FolderSet:
    """An image-folder data set: its splits ("train", "valid"; labels index `classes`) and where it came from."""
    root: Path
    classes: tuple            # sorted folder names; ints when every name is a digit 0-9 (the book's export)
    splits: dict[str, Split] = field(repr=False)
    sha256: str = ""          # of the listing the cache is keyed by: every file's path, size and mtime
    skipped: list[str] = field(default_factory=list)  # unreadable images left out, "path: why"
    valid_pct: float | None = None  # set when valid was split from one folder
    cached: bool = False      # whether the decoded images came from the cache

    def info(self) -> dict:
        """What a run records about its data (JSON-able)."""
        return {"name": "image folders", "root": str(self.root), "classes": list(self.classes),
                "sha256": self.sha256, "skipped": len(self.skipped), "valid_pct": self.valid_pct}


def is_image_folder_dataset(root: str | Path | None) -> bool:
    """True for a folder of class folders (root/<class>/*) or of train/ and valid/ class folders, as opposed to a
    folder of IDX files."""
    if root is None or not Path(root).is_dir():
        return False
    root = Path(root)
    if any(root.glob("*-idx[13]-ubyte*")):
        return False
    return any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())


def class_folders(folder: Path) -> list[Path]:
    """The class sub-folders of a folder, sorted by name as ImageFolder sorts them (hidden ones left out)."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def image_files(folder: Path) -> list[os.DirEntry]:
    """The image files of a class folder (by suffix, as ImageFolder picks them), sorted by name."""
    with os.scandir(folder) as it:
        found = [e for e in it if e.is_file() and not e.name.startswith(".")
                 and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES]
    return sorted(found, key=lambda e: e.name)


def decode(path, size: tuple[int, int] = SIZE) -> np.ndarray:
    """One image file (a path or a file object) as a uint8 grey array of `size` (h, w): see `squash`."""
    with Image.open(path) as im:
        im.load()
        return squash(im, size)


def squash(im: Image.Image, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A picture as the folder loader reads it: colour made grey (PIL's "L"), other sizes squashed (bilinear),
    uint8 (h, w). Predict reads a folder-trained model's pictures through this too (data/preparation.py)."""
    grey = im.convert("L")
    if grey.size[::-1] != size:
        grey = grey.resize(size[::-1], Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.uint8)


def listing(layout: dict[str, list[Path]]) -> tuple[dict[str, dict[str, list[os.DirEntry]]], str]:
    """Every split's class folders' image files, and the sha256 of their names, sizes and mtimes (the cache key)."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{SIZE}".encode())
    files: dict[str, dict[str, list[os.DirEntry]]] = {}
    for split, folders in layout.items():
        files[split] = {}
        for d in folders:
            entries = image_files(d)
            files[split][d.name] = entries
            for e in entries:
                st = e.stat()
                h.update(f"{split}/{d.name}/{e.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return files, h.hexdigest()


def decode_split(files: dict[str, list[os.DirEntry]], classes: list[str], skipped: list[str]) -> Split:
    """Decode a split's images (labels: index of the class folder in `classes`); unreadable ones are skipped and
    noted in `skipped`."""
    images, labels = [], []
    # in file-name order across the classes (class order for equal names): the folders `digitlab data export`
    # writes (<index in the IDX file>.png) then give the IDX files' tensors in their order, so the same recipe and
    # seed train the same model on either
    ordered = sorted(((e.name, classes.index(name), e) for name, entries in files.items() for e in entries),
                     key=lambda t: (t[0], t[1]))
    for _, label, e in ordered:
        try:
            images.append(decode(e.path))
            labels.append(label)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            skipped.append(f"{e.path}: {err.__class__.__name__}: {err}")
    stacked = torch.from_numpy(np.stack(images)) if images else torch.empty(0, *SIZE, dtype=torch.uint8)
    return Split(stacked, torch.tensor(labels, dtype=torch.int64))


def folder_layout(root: Path, valid_pct: float | None) -> dict[str, list[Path]]:
    """split -> its class folders, checked: train/ and valid/ (valid's classes among train's), or one folder."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder. Give a folder of class folders (root/<class>/*.png), or of "
                        f"train/<class>/ and valid/<class>/ folders.")
    train_dir = root / "train" if (root / "train").is_dir() else root
    layout = {"train": class_folders(train_dir)}
    if not layout["train"]:
        raise DataError(f"{train_dir}: no label folders inside. Put each class's images in a sub-folder named by "
                        f"the class, e.g. {train_dir}/cat/1.png.")
    if len(layout["train"]) < 2:
        raise DataError(f"{train_dir}: a single class folder ({layout['train'][0].name}); a classifier needs at "
                        f"least two classes. Add another class folder.")
    if (root / "valid").is_dir():
        if valid_pct is not None:
            raise ConfigError(f"{root} has its own valid/ folder; drop --valid-pct (it splits a single folder).")
        layout["valid"] = class_folders(root / "valid")
        names = {d.name for d in layout["train"]}
        for d in layout["valid"]:
            if d.name not in names:
                raise DataError(f"{d}: class {d.name!r} is in valid/ but not in train/; add {train_dir / d.name}/ "
                                f"with its training images, or remove {d}.")
    elif train_dir != root:
        raise DataError(f"{root} has train/ but no valid/ folder; add valid/<class>/ folders, or put the class "
                        f"folders directly in {root} and pass --valid-pct to split them.")
    return layout


def seeded_valid_split(split: Split, valid_pct: float, seed: int) -> tuple[Split, Split]:
    """(train, valid): a seeded random `valid_pct` of the images held out, both parts in folder order."""
    if not 0 < valid_pct < 1:
        raise ConfigError(f"valid_pct must be between 0 and 1 (a share of the images), got {valid_pct}.")
    n_valid = max(1, round(len(split) * valid_pct))
    chosen = torch.zeros(len(split), dtype=torch.bool)
    chosen[torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n_valid]] = True
    return Split(split.images[~chosen], split.labels[~chosen]), Split(split.images[chosen], split.labels[chosen])


def load_image_folders(root: str | Path, valid_pct: float | None = None, seed: int = 42,
                       cache: bool = True) -> FolderSet:
    """An image-folder data set, decoded once and then read from the cache while the folder is unchanged.

    Unreadable images among good ones are skipped, with a one-line note naming the first and the count: one
    broken download in a scraped folder should not stop a run, and ImageFolder users expect a folder to load;
    a class folder with no readable image at all is an error, as is a folder with a single class.
    """
    root = Path(root)
    layout = folder_layout(root, valid_pct)
    files, key = listing(layout)
    classes = [d.name for d in layout["train"]]
    for split, per_class in files.items():
        for name, entries in per_class.items():
            if not entries:
                suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
                raise DataError(f"{layout_folder(root, split) / name}: empty class folder (no {suffixes} files). "
                                f"Add images or remove the folder.")
    cache_file = cache_dir() / "folders" / f"{key}.pt"
    stored = None
    if cache:
        try:
            stored = torch.load(cache_file, weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError):
            stored = None  # none yet, or unreadable: decode again
    from_cache = stored is not None
    if stored is None:
        skipped: list[str] = []
        decoded = {split: decode_split(per_class, classes, skipped) for split, per_class in files.items()}
        stored = {"skipped": skipped, **{f"{s}_{k}": getattr(v, k) for s, v in decoded.items()
                                         for k in ("images", "labels")}}
        if cache:
            try:
                atomic_write(cache_file, lambda tmp: torch.save(stored, tmp))
            except OSError:
                pass  # a read-only home only costs decoding again next time
    splits = {s: Split(stored[f"{s}_images"], stored[f"{s}_labels"]) for s in files}
    for split, s in splits.items():
        counts = torch.bincount(s.labels, minlength=len(classes))
        for name in files[split]:
            if counts[classes.index(name)] == 0:
                raise DataError(f"{layout_folder(root, split) / name}: empty class folder (none of its images could "
                                f"be read). Replace them with readable images or remove the folder.")
    skipped = list(stored["skipped"])
    if skipped:
        print(f"note: skipped {len(skipped)} unreadable image(s) in {root} (first: {skipped[0]}).", file=sys.stderr)
    if "valid" not in splits:
        valid_pct = DEFAULT_VALID_PCT if valid_pct is None else valid_pct
        splits["train"], splits["valid"] = seeded_valid_split(splits["train"], valid_pct, seed)
    digits = all(n in {str(d) for d in range(10)} for n in classes)  # the book's export: MNIST's ints
    named = tuple(int(c) if digits else c for c in classes)
    return FolderSet(root, named, splits, key, skipped, valid_pct, from_cache)


def layout_folder(root: Path, split: str) -> Path:
    """The folder a split's class folders are in."""
    return root / split if (root / split).is_dir() else root
