"""Stage 2 of the chapter: the pixel-similarity baseline. The "ideal" 3 and 7 are the mean images; an image is
called a 3 when it is closer to the mean 3 than to the mean 7, by L1 (mean absolute) or RMSE distance."""

from __future__ import annotations

from typing import Callable

import torch

from ..data.mnist import Split


def mean_image(images: torch.Tensor) -> torch.Tensor:
    """The average of a stack of uint8 images, as floats in [0, 1]: (N, 28, 28) -> (28, 28)."""
    return images.float().div(255).mean(0)


def l1_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over the last two axes (broadcasts a stack against one image)."""
    return (a - b).abs().mean((-1, -2))


def rmse_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Root mean squared difference over the last two axes."""
    return ((a - b) ** 2).mean((-1, -2)).sqrt()


def is_3(x: torch.Tensor, mean3: torch.Tensor, mean7: torch.Tensor, dist: Callable = l1_distance) -> torch.Tensor:
    """True where x is closer to the mean 3 than to the mean 7."""
    return dist(x, mean3) < dist(x, mean7)


def pixel_similarity(train: Split, valid: Split) -> dict:
    """Means from the training 3s and 7s, accuracies on the validation 3s and 7s for both distances.

    'accuracy' is the book's figure, the mean of the 3s' and the 7s' accuracies; 'overall' counts every image.
    """
    mean3, mean7 = mean_image(train.images[train.labels == 3]), mean_image(train.images[train.labels == 7])
    threes = valid.images[valid.labels == 3].float().div(255)
    sevens = valid.images[valid.labels == 7].float().div(255)
    out = {"mean3": mean3, "mean7": mean7}
    for name, dist in (("l1", l1_distance), ("rmse", rmse_distance)):
        acc3 = is_3(threes, mean3, mean7, dist).float().mean().item()
        acc7 = 1 - is_3(sevens, mean3, mean7, dist).float().mean().item()
        overall = (acc3 * len(threes) + acc7 * len(sevens)) / (len(threes) + len(sevens))
        out[name] = {"acc_3": acc3, "acc_7": acc7, "accuracy": (acc3 + acc7) / 2, "overall": overall}
    return out
