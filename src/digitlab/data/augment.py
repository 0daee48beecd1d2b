"""Batch augmentation on whatever device the batch is on: random translation, rotation and scale of each image,
and optionally a left-right mirror (for sets such as Fashion-MNIST, whose classes keep their name mirrored; a
mirrored digit is no digit).

One random affine map per image, drawn from a seeded CPU generator (so a seed gives the same maps on CPU and GPU),
applied to the whole batch at once with affine_grid + grid_sample. Pixels moved in from outside are black (0),
as the background of an MNIST digit. Pure tensor functions: the Learner callback that applies them to every
training batch is digitlab.train.callbacks.BatchAugment.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(n: int, g: torch.Generator, shift: float = 2.0, degrees: float = 10.0,
                  scale: float = 0.1, flip: bool = False) -> torch.Tensor:
    """(n, 2, 3) affine maps for affine_grid: rotation within +-degrees, zoom within 1 +- scale, and translation
    within +-shift pixels of a 28-pixel image, each uniform and independent per image; with `flip`, half of the
    images (drawn after the rest, so the maps without it stay as they were) mirrored left to right."""
    u = torch.rand(n, 4, generator=g) * 2 - 1                   # (n, 4) in [-1, 1)
    angle = u[:, 0] * math.radians(degrees)
    zoom = 1 + u[:, 1] * scale                                  # > 1 makes the digit bigger
    tx, ty = u[:, 2] * shift * 2 / 28, u[:, 3] * shift * 2 / 28  # affine_grid spans [-1, 1] over 28 pixels
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    # theta maps output coordinates to input ones: dividing by zoom enlarges the digit
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    if flip:  # reading input x from -output x mirrors the image: negate the column that output x multiplies
        sign = torch.randint(0, 2, (n,), generator=g).to(theta.dtype) * 2 - 1
        theta[:, :, 0] *= sign[:, None]
    return theta


def augment_batch(xb: torch.Tensor, g: torch.Generator, shift: float = 2.0, degrees: float = 10.0,
                  scale: float = 0.1, flip: bool = False) -> torch.Tensor:
    """xb (N, C, H, W) float -> the same shape, each image moved by its own random affine map."""
    theta = random_affine(len(xb), g, shift, degrees, scale, flip).to(device=xb.device, dtype=xb.dtype)
    grid = F.affine_grid(theta, list(xb.shape), align_corners=False)  # (N, H, W, 2)
    return F.grid_sample(xb, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
