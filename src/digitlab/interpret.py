"""What a trained classifier gets wrong: confusion matrix, per-class accuracy, top losses (fastai's
ClassificationInterpretation), computed from a model and a split; the pictures live in viz.figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .data.mnist import Split
from .inference import class_probs
from .train.metrics import exact_accuracy
from .viz.figures import confusion_figure, image_grid_figure


def confusion_matrix(actual: torch.Tensor, preds: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, n_classes) counts: row = actual class, column = predicted class."""
    idx = actual.long() * n_classes + preds.long()
    return torch.bincount(idx, minlength=n_classes * n_classes).view(n_classes, n_classes)


@dataclass
class Interpretation:
    """Predictions of a model on a split with the labels (class indices) and what each class stands for."""
    images: torch.Tensor    # uint8 (N, 28, 28)
    actual: torch.Tensor    # int64 (N,) class indices
    probs: torch.Tensor     # float (N, C)
    classes: Sequence       # what each class index stands for: a digit (MNIST) or a name ("Sneaker")

    @classmethod
    def from_model(cls, model: torch.nn.Module, split: Split, classes: Sequence) -> "Interpretation":
        """Run the model over the split in eval mode (batched) and keep its probabilities."""
        return cls(split.images, split.labels, class_probs(model, split.images), list(classes))

    @property
    def preds(self) -> torch.Tensor:
        return self.probs.argmax(1)

    @property
    def losses(self) -> torch.Tensor:
        """Cross-entropy of each image: -log p(actual class)."""
        return -self.probs.clamp_min(1e-12).log().gather(1, self.actual.view(-1, 1)).squeeze(1)

    @property
    def accuracy(self) -> float:
        return exact_accuracy(self.preds, self.actual)

    def confusion_matrix(self) -> torch.Tensor:
        return confusion_matrix(self.actual, self.preds, len(self.classes))

    def per_class_accuracy(self) -> dict:
        """Class (digit or name) -> the fraction of its images classified right (recall)."""
        cm = self.confusion_matrix().float()
        return {d: (cm[i, i] / cm[i].sum().clamp_min(1)).item() for i, d in enumerate(self.classes)}

    def most_confused(self, min_count: int = 1) -> list[tuple]:
        """(actual class, predicted class, count) for off-diagonal cells, most frequent first."""
        cm = self.confusion_matrix()
        pairs = [(self.classes[i], self.classes[j], int(cm[i, j])) for i in range(len(self.classes))
                 for j in range(len(self.classes)) if i != j and cm[i, j] >= min_count]
        return sorted(pairs, key=lambda p: -p[2])

    def top_losses(self, k: int = 9) -> list[dict]:
        """The k images the model is most wrong about: index, predicted, actual, loss, probability of the prediction."""
        losses = self.losses
        top = losses.topk(min(k, len(losses))).indices
        preds = self.preds
        return [{"index": int(i), "predicted": self.classes[int(preds[i])], "actual": self.classes[int(self.actual[i])],
                 "loss": float(losses[i]), "probability": float(self.probs[i, preds[i]])} for i in top]

    def to_dict(self, k: int = 9) -> dict:
        """Everything above as plain JSON-able values."""
        return {"classes": list(self.classes), "accuracy": self.accuracy,
                "confusion_matrix": self.confusion_matrix().tolist(),
                "per_class_accuracy": {str(d): a for d, a in self.per_class_accuracy().items()},
                "most_confused": self.most_confused()[:10], "top_losses": self.top_losses(k)}

    def plot_confusion_matrix(self, title: str | None = None):
        """The confusion matrix as a figure, counts printed in each cell; class names slanted so they fit."""
        fig = confusion_figure(self.confusion_matrix(), self.classes, title)
        if max(len(str(c)) for c in self.classes) > 2:  # names such as "Ankle boot", not digits
            ax = fig.axes[0]
            ax.set_xticks(ax.get_xticks(), ax.get_xticklabels(), rotation=45, ha="right", fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            fig.subplots_adjust(left=0.24, bottom=0.24)
        return fig

    def plot_top_losses(self, k: int = 9):
        """The k worst images, each titled predicted/actual/loss/probability (fastai's plot_top_losses)."""
        rows = self.top_losses(k)
        titles = [f"{r['predicted']}/{r['actual']} / {r['loss']:.2f} / {r['probability']:.2f}" for r in rows]
        fig = image_grid_figure([self.images[r["index"]] for r in rows], titles)
        fig.suptitle("predicted / actual / loss / probability", fontsize=9)
        return fig


def show_batch(images: torch.Tensor, labels: Sequence | torch.Tensor, classes: Sequence | None = None,
               n: int = 9):
    """The first n images with their labels (class indices, named through `classes` when given)."""
    images = images[:n]
    if images.dim() == 4:  # (N, 1, 28, 28) batches from a DataLoader
        images = images[:, 0]
    labels = [int(v) for v in list(labels)[:n]]
    titles = [str(classes[v] if classes is not None else v) for v in labels]
    return image_grid_figure(list(images), titles)
