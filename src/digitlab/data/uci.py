"""The UCI handwritten digits that scikit-learn ships: 1797 8x8 digits by 43 writers who are not MNIST's."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from ..errors import DigitlabError


def uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """Images as float (N, 8, 8) in [0, 1], bright ink on dark, and labels (N,). Read from the CSV inside the
    installed scikit-learn package (found, not imported), so nothing is downloaded."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DigitlabError("the UCI digits come with scikit-learn: `pip install scikit-learn` (nothing else is "
                            "downloaded), then run this again.")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as fh:
        rows = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    return rows[:, :64].reshape(-1, 8, 8) / 16.0, rows[:, 64].astype(np.int64)
