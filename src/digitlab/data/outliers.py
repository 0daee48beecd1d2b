"""Pictures that are not digits, prepared as `predict` prepares a user's picture: what a model is shown to learn
what is not a digit (outlier exposure, Hendrycks et al. 2019), and what its detector is chosen on.

Three parts that share no picture, no seed and no font (data.nondigits): `train` (TRAIN_SEED, the train fonts,
Fashion-MNIST training images 0-19999), `valid` for every choice (VALID_SEED, the valid fonts, Fashion-MNIST
training images 50000-51999), and the test part that only benchmarks/nondigits.py reads (TEST_SEED, the test
fonts, Fashion-MNIST's test images). Fashion-MNIST comes from Debian's package when it is installed
(`apt-get install dataset-fashion-mnist`); without it the drawn and printed kinds are used alone, and the run
records which sets it saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from . import nondigits
from .idx import read_idx
from .images import prepare_many
from .mnist import find_file

FASHION = Path("/usr/share/datasets/fashion-mnist")
KINDS = ("closed", "open", "scribble", "letters")
TRAIN_COUNTS = {"closed": 3000, "open": 3000, "scribble": 6000, "letters": 3000}
EXTENDED_COUNTS = {**TRAIN_COUNTS, "scribble": 54000}  # exposure_map's: scribbles, the kind flagged least, x9
                                                       # (validation, 99% accepted, not recorded: x3
                                                       # flagged 96.8% of them, x9 97.4%)
FASHION_PARTS = {"train": slice(0, 20000), "valid": slice(50000, 52000)}  # of Fashion-MNIST's training images
SEEDS = {"train": nondigits.TRAIN_SEED, "valid": nondigits.VALID_SEED, "test": nondigits.TEST_SEED}


def prepared(pictures) -> torch.Tensor:
    """Pictures through `prepare_image` as uint8 (M, 28, 28), blank ones left out (images.prepare_many)."""
    return prepare_many(pictures)[0]


def drawn(kind: str, n: int, part: str) -> list[Image.Image]:
    """n pictures of one made kind (KINDS) for a part (train, valid, test): its seed, and for letters its fonts."""
    fonts = nondigits.font_split()[part] if kind == "letters" else None
    return nondigits.make(kind, n, SEEDS[part], fonts)


def fashion_images(part: str, root: Path = FASHION) -> np.ndarray | None:
    """Fashion-MNIST training images of a part (uint8 N x 28 x 28), or None where the data set is not installed."""
    try:
        found = find_file(root, "train-images-idx3-ubyte")
    except DataError:
        return None
    return read_idx(found)[FASHION_PARTS[part]].numpy()


def exposure_set(counts: dict[str, int] = TRAIN_COUNTS, root: Path = FASHION, as_is: bool = False
                 ) -> tuple[torch.Tensor, dict]:
    """The training part's non-digits, prepared (uint8 (N, 28, 28)), and what it holds (recorded with a run);
    `as_is`: half the Fashion-MNIST images a second time, unprepared."""
    sets = {kind: prepared(drawn(kind, n, "train")) for kind, n in counts.items()}
    fashion = fashion_images("train", root)
    if fashion is not None:
        sets["fashion_train"] = prepared(fashion)
    if fashion is not None and as_is:
        # and as the IDX file holds them: a 28x28 array given as it is (the API's pixels, `evaluate --ood`) is not
        # prepared, and a head that saw clothes only cropped and centred let a twentieth of them through
        sets["fashion_train_as_is"] = torch.from_numpy(fashion[::2].copy())
    info = {name: len(x) for name, x in sets.items()}
    return torch.cat(list(sets.values())), info


def choice_sets(n: int, root: Path = FASHION) -> dict[str, torch.Tensor]:
    """The valid part's non-digits by kind, prepared: what a detector's method and settings are chosen on."""
    sets = {kind: prepared(drawn(kind, n, "valid")) for kind in KINDS}
    fashion = fashion_images("valid", root)
    if fashion is not None:
        sets["fashion"] = prepared(fashion[:n])
        sets["fashion_as_is"] = torch.from_numpy(fashion[:n].copy())
    return sets
