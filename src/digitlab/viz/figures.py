"""Figures with matplotlib's object API (no pyplot: no global state, no GUI backend, safe in servers).

Images and curves may be tensors or numpy arrays, and torch is imported only where a figure computes with it, so
a process that only draws (reproduce's plotter) starts without torch's second-long import.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch


PLOT_MARGINS = dict(left=0.1, right=0.97, bottom=0.14, top=0.88, wspace=0.3)
IMAGE_MARGINS = dict(left=0.03, right=0.97, bottom=0.03, top=0.85, wspace=0.1)


def new_figure(width: float = 6, height: float = 4, nrows: int = 1, ncols: int = 1, margins: dict | None = None):
    """A Figure with an Agg canvas and its axes (a list when there are several).

    Margins are fixed rather than computed by a layout engine, which would draw every figure twice.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: matplotlib takes half a second
    from matplotlib.figure import Figure  # deferred: matplotlib takes half a second

    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(**(margins or PLOT_MARGINS))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).flatten().tolist()
    return fig, axes if len(axes) > 1 else axes[0]


def save(fig, path: str | Path, dpi: int = 80) -> Path:
    """Save a figure as PNG, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def as_array(x) -> np.ndarray:
    """A tensor (on any device, with or without grad) or array-like as a float numpy array."""
    return x.detach().cpu().float().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float32)


def show_image(ax, img: torch.Tensor | np.ndarray, title: str | None = None, cmap: str = "Greys") -> None:
    """Draw a 2-D tensor or array as an image without ticks (the book's show_image)."""
    ax.imshow(as_array(img), cmap=cmap)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def images_figure(images: Sequence[torch.Tensor | np.ndarray], titles: Sequence[str], cmap: str = "Greys", size: float = 2.2):
    """Several images side by side."""
    fig, axes = new_figure(size * len(images), size + 0.3, 1, len(images), IMAGE_MARGINS)
    for ax, img, title in zip(axes if len(images) > 1 else [axes], images, titles):
        show_image(ax, img, title, cmap)
    return fig


def grey_table_figure(img: torch.Tensor, rows: slice = slice(4, 15), cols: slice = slice(4, 22)):
    """The book's `df.style.background_gradient('Greys')`: each pixel's value printed on its own shade."""
    import torch  # deferred: a process that only draws (the plotter) runs without torch

    region = img[rows, cols].cpu()
    h, w = region.shape
    fig, ax = new_figure(w * 0.42, h * 0.32 + 0.3, margins=dict(left=0.05, right=0.99, bottom=0.09, top=0.98))
    ax.imshow(region.float().numpy(), cmap="Greys", vmin=0, vmax=255 if region.max() > 1 else 1, aspect="auto")
    for (i, j), v in zip(torch.cartesian_prod(torch.arange(h), torch.arange(w)).tolist(), region.flatten().tolist()):
        ax.text(j, i, f"{v:g}" if isinstance(v, int) or float(v).is_integer() else f"{v:.2f}", ha="center",
                va="center", fontsize=6, color="white" if v > (127 if region.max() > 1 else 0.5) else "black")
    ax.set_xticks(range(w), [str(c) for c in range(cols.start or 0, (cols.start or 0) + w)], fontsize=6)
    ax.set_yticks(range(h), [str(r) for r in range(rows.start or 0, (rows.start or 0) + h)], fontsize=6)
    return fig


def plot_function(f: Callable, tx: str | None = None, ty: str | None = None, title: str | None = None,
                  min: float = -2.1, max: float = 2.1, figsize=(6, 4), ax=None):
    """Plot f over [min, max] (fastbook's plot_function); returns the figure."""
    import torch  # deferred: a process that only draws (the plotter) runs without torch

    x = torch.linspace(min, max, 100)
    fig, ax = new_figure(*figsize) if ax is None else (ax.figure, ax)
    ax.plot(x.numpy(), f(x).detach().numpy())
    if tx:
        ax.set_xlabel(tx)
    if ty:
        ax.set_ylabel(ty)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig


def curves_figure(logs: Sequence[dict], batch_losses: Sequence[float] = (), metric: str | None = None,
                  title: str | None = None):
    """Loss per batch and per epoch (train and valid), and the metric per epoch, from a Recorder."""
    fig, (ax_loss, ax_metric) = new_figure(10, 3.6, 1, 2)
    if title:
        fig.suptitle(title)
    epochs = [log["epoch"] + 1 for log in logs]
    if len(batch_losses):
        steps = np.linspace(0, len(logs), len(batch_losses) + 1)[1:]
        ax_loss.plot(steps, batch_losses, alpha=0.35, lw=0.8, label="train loss (batch)")
    for key in ("train_loss", "valid_loss"):
        if logs and key in logs[0]:
            ax_loss.plot(epochs, [log[key] for log in logs], marker=".", label=key.replace("_", " "))
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    metric = metric or next((k for k in (logs[0] if logs else {}) if k not in ("epoch", "train_loss", "valid_loss", "time")), None)
    if metric and logs and all(metric in log for log in logs):
        ax_metric.plot(epochs, [log[metric] for log in logs], marker=".", color="C2")
        ax_metric.set_ylabel(metric)
    elif metric:  # a run with no validation split measures nothing per epoch
        ax_metric.text(0.5, 0.5, f"no per-epoch {metric}: no validation split", ha="center", va="center",
                       transform=ax_metric.transAxes)
    ax_metric.set_xlabel("epoch")
    ax_metric.grid(alpha=0.3)
    return fig


def histories_figure(histories: dict[str, Sequence[float]], book: dict[str, float] | None = None, ylabel="accuracy"):
    """Validation accuracy after each epoch for several runs, with the book's final figures as dotted lines."""
    fig, ax = new_figure(7, 4)
    for i, (name, hist) in enumerate(histories.items()):
        ax.plot(range(1, len(hist) + 1), hist, marker=".", ms=3, color=f"C{i}", label=name)
        if book and name in book:
            ax.axhline(book[name], color=f"C{i}", ls=":", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title("validation accuracy per epoch (dotted: the book's figure)" if book else None)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def image_grid_figure(images: Sequence[torch.Tensor], titles: Sequence[str], ncols: int | None = None,
                      size: float = 1.6, cmap: str = "Greys"):
    """Images in a grid (show_batch, top losses), each with a small title."""
    n = max(len(images), 1)
    ncols = ncols or min(n, 5)
    nrows = math.ceil(n / ncols)
    fig, axes = new_figure(size * ncols, (size + 0.25) * nrows + 0.3, nrows, ncols,
                           dict(left=0.02, right=0.98, bottom=0.02, top=0.88, wspace=0.1, hspace=0.35))
    axes = axes if isinstance(axes, list) else [axes]
    for i, ax in enumerate(axes):
        if i < len(images):
            show_image(ax, images[i], None, cmap)
            ax.set_title(titles[i], fontsize=7)
        else:
            ax.set_axis_off()
    return fig


def confusion_figure(cm: torch.Tensor, classes: Sequence[int], title: str | None = None):
    """A confusion matrix (rows actual, columns predicted) with the count in each cell."""
    n = len(classes)
    side = max(3.0, 0.45 * n + 1.5)
    fig, ax = new_figure(side, side, margins=dict(left=0.16, right=0.97, bottom=0.14, top=0.9))
    values = cm.float()
    ax.imshow(values.numpy(), cmap="Blues")
    high = values.max().item() / 2
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7 if n > 5 else 10,
                    color="white" if values[i, j] > high else "black")
    ax.set_xticks(range(n), [str(c) for c in classes])
    ax.set_yticks(range(n), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title or "confusion matrix")
    return fig


def weights_figure(weight: torch.Tensor, classes: Sequence[int]):
    """A linear model's weights as one 28x28 image per class (red positive, blue negative)."""
    w = weight.detach().cpu().float().view(len(classes), 28, 28)
    fig, axes = new_figure(1.6 * len(classes), 2.0, 1, len(classes), IMAGE_MARGINS)
    axes = axes if isinstance(axes, list) else [axes]
    for ax, img, c in zip(axes, w, classes):
        lim = img.abs().max().item() or 1.0
        ax.imshow(img.numpy(), cmap="coolwarm", vmin=-lim, vmax=lim)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"weights of {c}", fontsize=8)
    return fig


def reliability_figure(probs_by_name: dict, labels, bins: int = 15):
    """Reliability diagram: accuracy against confidence in equal-width bins, one line per set of probabilities
    (say before and after temperature scaling); the diagonal is perfect calibration."""
    fig, ax = new_figure(5, 4.5)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfectly calibrated")
    labels = as_array(labels).astype(np.int64)
    for i, (name, probs) in enumerate(probs_by_name.items()):
        p = as_array(probs)
        conf, right = p.max(1), p.argmax(1) == labels
        which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # bin i holds (i/bins, (i+1)/bins]
        used = [b for b in range(bins) if (which == b).any()]
        ax.plot([conf[which == b].mean() for b in used], [right[which == b].mean() for b in used], marker="o",
                ms=4, color=f"C{i}", label=name)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("reliability on the scored split")
    return fig
