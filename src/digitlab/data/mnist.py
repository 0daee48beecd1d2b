"""The MNIST files shipped inside the package: find them, verify their sha256, and cut the splits the book uses.

The "MNIST_SAMPLE" set of the book is exactly the 3s and 7s of these files: train from the training file,
valid from the t10k (test) file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch

from ..errors import ChecksumError, DataError, IdxError
from ..fileio import atomic_write
from .idx import parse_idx, read_bytes

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
FILES = {  # name -> sha256 of the uncompressed bytes, as published with the data
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SPLIT_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "valid": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

# Found through importlib.resources, so it is wherever pip put the package (site-packages, or src/ when editable);
# str() then Path: the reader needs a real folder, which every normal install is.
SHIPPED_DATA = Path(str(files("digitlab") / "datasets" / "mnist"))


@dataclass
class Split:
    """Images as uint8 (N, 28, 28) and digit labels as int64 (N,)."""
    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, digits: tuple[int, ...]) -> "Split":
        """The images of these digits, grouped in the order given (the book stacks 3s then 7s), file order within."""
        idx = torch.cat([torch.nonzero(self.labels == d).flatten() for d in digits])
        return Split(self.images[idx], self.labels[idx])


def data_dir(root: str | Path | None = None) -> Path:
    """Where the MNIST files are: `root`, else $DIGITLAB_DATA, else the files shipped in the package."""
    for candidate in (root, os.environ.get("DIGITLAB_DATA")):
        if candidate:
            return Path(candidate)
    return SHIPPED_DATA


def find_file(root: Path, name: str) -> Path:
    """The file `name` in `root`, gzipped or raw."""
    for path in (root / f"{name}.gz", root / name):
        if path.exists():
            return path
    raise DataError(f"{root}: no {name}.gz or {name}. Put the four MNIST IDX files there, or pass --data DIR / "
                    f"set DIGITLAB_DATA to the folder that holds them.")


def cache_dir() -> Path:
    """Where verified checksums and unpacked copies of gzip files are kept ($XDG_CACHE_HOME/digitlab)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "digitlab"


def digest_bytes(path: Path) -> tuple[str, bytes]:
    """The file's uncompressed bytes and their sha256.

    The hash runs once per version of the file (size and mtime); the unpacked bytes of a gzip file are kept in
    the cache under their sha256, which makes later loads skip both the gunzip and the hash.
    """
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    stamps_file = cache_dir() / "verified.json"
    try:
        stamps = json.loads(stamps_file.read_text())
    except (OSError, ValueError):
        stamps = {}
    digest = stamps.get(key)
    if digest:
        try:
            return digest, (cache_dir() / f"{digest}.idx").read_bytes() if path.suffix == ".gz" else path.read_bytes()
        except OSError:
            pass  # the cache was cleared: hash again
    data = read_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    try:
        if path.suffix == ".gz":
            atomic_write(cache_dir() / f"{digest}.idx", lambda tmp: tmp.write_bytes(data))
        atomic_write(stamps_file, lambda tmp: tmp.write_text(json.dumps({**stamps, key: digest})))
    except OSError:
        pass  # a read-only home only costs a re-hash next time
    return digest, data


def checksum_error(path: Path, digest: str, expected: str) -> ChecksumError:
    """The refusal of a file whose sha256 is not the published one."""
    return ChecksumError(f"{path}: checksum mismatch: sha256 of the uncompressed data is {digest}, expected "
                         f"{expected}. The file is corrupt or a different data set; restore it from the repo "
                         f"(git checkout -- {path.name}) or a mirror.")


def verified_bytes(path: Path, expected: str) -> bytes:
    """The file's uncompressed bytes, checked against the published sha256 (hashed once per file version)."""
    digest, data = digest_bytes(path)
    if digest != expected:
        raise checksum_error(path, digest, expected)
    return data


def load_split(split: str = "train", root: str | Path | None = None, verify: bool = True) -> Split:
    """Load 'train' (60000) or 'valid' (the 10000 test images) from IDX files, checking shapes and counts."""
    if split not in SPLIT_FILES:
        raise DataError(f"unknown split {split!r}; use one of {sorted(SPLIT_FILES)}.")
    root = data_dir(root)
    loaded = []
    for name in SPLIT_FILES[split]:
        path = find_file(root, name)
        loaded.append((path, verified_bytes(path, FILES[name]) if verify else read_bytes(path)))
    return split_from_bytes(*loaded)


def split_from_bytes(images_file: tuple[Path, bytes], labels_file: tuple[Path, bytes]) -> Split:
    """A Split from the bytes of an images file and a labels file, after the reader's structural checks:
    magic numbers, (N, 28, 28) images, one label per image, labels 0-9."""
    (img_path, img_data), (lbl_path, lbl_data) = images_file, labels_file
    images = parse_idx(img_data, str(img_path), expect_magic=IMAGES_MAGIC)
    labels = parse_idx(lbl_data, str(lbl_path), expect_magic=LABELS_MAGIC)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise IdxError(f"{img_path}: images have shape {images.shape}, expected (N, 28, 28).")
    if labels.ndim != 1:
        raise IdxError(f"{lbl_path}: labels have shape {labels.shape}, expected (N,).")
    if len(images) != len(labels):
        raise IdxError(f"{img_path} has {len(images)} images but {lbl_path} has {len(labels)} labels: "
                       f"image/label count mismatch. Use files from the same set.")
    if len(labels) and labels.max() > 9:
        raise IdxError(f"{lbl_path}: label {int(labels.max())} is outside 0-9.")
    return Split(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype("int64")))


def load_mnist(root: str | Path | None = None, verify: bool = True) -> dict[str, Split]:
    """Both splits of the full ten-digit set."""
    return {s: load_split(s, root, verify) for s in SPLIT_FILES}


def mnist_sample(root: str | Path | None = None, verify: bool = True, digits: tuple[int, ...] = (3, 7)) -> dict[str, Split]:
    """The book's MNIST_SAMPLE: the 3s and 7s of each split (12396 train, 2038 valid)."""
    return {s: split.subset(digits) for s, split in load_mnist(root, verify).items()}


def as_xy(split: Split, positive: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs and targets: x as float (N, 784) in [0, 1]; y as digit labels, or, with `positive`,
    as the book's float (N, 1) targets, 1 for that digit and 0 for the other."""
    x = split.images.float().div_(255).view(len(split), 28 * 28)
    if positive is None:
        return x, split.labels
    return x, (split.labels == positive).float().unsqueeze(1)


def pick_image(split: str = "train", index: int = 0, digit: int | None = None, root=None) -> tuple[torch.Tensor, int]:
    """One uint8 image and its label: the index-th of the split, or of its images of `digit`."""
    s = load_split(split, root)
    if digit is not None:
        s = s.subset((digit,))
    if not 0 <= index < len(s):
        raise DataError(f"index {index} is out of range: the {split} split has {len(s)} images"
                        f"{'' if digit is None else f' of {digit}s'}.")
    return s.images[index], int(s.labels[index])
