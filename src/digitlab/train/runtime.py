"""How reproducibly a run starts: one seed for every generator (the device comes from digitlab.hardware)."""

from __future__ import annotations

import random

import numpy as np
import torch

from ..hardware import resolve_device  # noqa: F401  (train/ reads the device from here)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
