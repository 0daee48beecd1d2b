"""Image folders in the layout the book reads: <split>/<label>/<name>.png, one 28x28 grey PNG per image.

Export writes each image as `<index in the IDX file>.png` (zero-padded), so reading the folders back in sorted
order gives exactly the tensors of the IDX path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .mnist import Split, load_mnist

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


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


def read_image(path: Path, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """One image as a uint8 grey array of `size` (h, w); DataError if it is not a readable image of that size."""
    try:
        with Image.open(path) as im:
            im.load()
            grey = im.convert("L")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({e.__class__.__name__}: {e}).") from None
    if grey.size[::-1] != size:
        raise DataError(f"{path}: image is {grey.size[0]}x{grey.size[1]}, expected {size[1]}x{size[0]}. "
                        f"Resize it, or use `digitlab predict` which preprocesses images of any size.")
    return np.asarray(grey, dtype=np.uint8)


def load_folder(path: str | Path, skip_bad: bool = False) -> tuple[Split, list[str]]:
    """Read <path>/<label>/* images into a Split; labels are the folder names, which must be digits 0-9.

    Files that are not images are an error, or with `skip_bad` are skipped and returned as warnings.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder. Give a folder holding one sub-folder per label (e.g. 3/ and 7/).")
    label_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not label_dirs:
        raise DataError(f"{root}: no label folders inside. Expected sub-folders named by digit, e.g. {root}/3/.")
    images, labels, warnings = [], [], []
    for d in label_dirs:
        if not (d.name.isdigit() and 0 <= int(d.name) <= 9):
            raise DataError(f"{d}: label folder names must be digits 0-9, got {d.name!r}.")
        files = sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
        n_before = len(images)
        for f in files:
            try:
                images.append(read_image(f))
                labels.append(int(d.name))
            except DataError as e:
                if not skip_bad:
                    raise DataError(f"{e} Remove it, or pass skip_bad=True (--skip-bad) to skip such files.") from None
                warnings.append(str(e))
        if len(images) == n_before:
            raise DataError(f"{d}: empty class folder (no readable images). Add images or remove the folder.")
    split = Split(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64))
    return split, warnings


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
