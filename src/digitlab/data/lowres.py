"""MNIST digits as low-resolution scans: what an 8x8 digit (the UCI set's kind) looks like after `predict`'s
preparation, made from MNIST's own training digits with their labels.

The UCI digits were made by counting, in each 4x4 block of a 32x32 bitmap of the digit, how many pixels are ink:
an 8x8 image of levels 0..16. `low_resolution` does the same to an MNIST digit (its ink box scaled into 32x32,
thresholded, counted in blocks), then prepares the 8x8 picture as `predict` prepares any picture, so a model that
trains on some of these reads, and accepts, a coarse scan of a digit as the digit it is.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .images import prepare_many

BITMAP, BLOCK = 32, 4   # the UCI set's bitmap side and counting block: 8x8 levels of 0..16
INK_LEVELS = (40, 160)  # the grey above which a scaled MNIST pixel is ink, drawn per digit: thick to thin strokes
                        # (MNIST's mean ink per 8x8 cell: 0.35 at 40, 0.21 at 160), as scanners and pens differ


def scan_8x8(digit: np.ndarray, ink_level: int = 127) -> np.ndarray:
    """An MNIST digit (uint8 28x28, light ink on black) as the UCI set's 8x8 count of ink per 4x4 block, in
    [0, 1] (count / 16); a pixel of the 32x32 bitmap is ink above `ink_level`."""
    rows, cols = np.nonzero(digit > 0)
    box = digit[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    scale = BITMAP / max(box.shape)
    h, w = max(1, round(box.shape[0] * scale)), max(1, round(box.shape[1] * scale))
    big = np.asarray(Image.fromarray(box).resize((w, h), Image.Resampling.BILINEAR)) > ink_level
    bitmap = np.zeros((BITMAP, BITMAP), bool)
    top, left = (BITMAP - h) // 2, (BITMAP - w) // 2
    bitmap[top: top + h, left: left + w] = big
    side = BITMAP // BLOCK
    return bitmap.reshape(side, BLOCK, side, BLOCK).sum((1, 3)) / BLOCK**2


def low_resolution(images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 digits (N, 28, 28) and labels -> the same digits scanned at 8x8 (each at an ink level drawn from
    INK_LEVELS with `seed`) and prepared as `predict` prepares a picture, as uint8 (M, 28, 28), with their labels
    (a scan left blank is dropped: M <= N)."""
    levels = np.random.default_rng(seed).integers(*INK_LEVELS, len(images), endpoint=True)
    scans = [Image.fromarray((scan_8x8(digit, int(level)) * 255).round().astype(np.uint8))
             for digit, level in zip(images.numpy(), levels)]
    x, kept = prepare_many(scans)
    return x, labels[torch.tensor(kept, dtype=torch.long)]
