"""A saved model's predictions on a user's own images: `Classifier.load(run_or_file).predict([image, ...])`.

Each image is made to look like the model's training images, then the model scores them all in one batch: for a
model of digits (its classes are ints) like an MNIST digit by `data.images.prepare_image`; for a model of named
classes (Fashion-MNIST, image folders) by `data.images.prepare_whole` (grey, 28x28, light objects on black).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.images import BlankImageError, prepare_image, prepare_whole
from .errors import DigitlabError
from .calibration import apply_temperature
from .inference import class_probs
from .runs import resolve_model_file
from .weights import load_model

UNSURE = 0.5  # a top probability below this is reported as a guess


@dataclass
class Prediction:
    """One image's predicted class, every class's probability, and the input the model saw."""
    label: int | str                 # the class: a digit (MNIST) or a name ("Sneaker")
    probs: dict[int | str, float]    # class -> probability
    input: torch.Tensor        # the 28x28 image the model saw

    @property
    def confidence(self) -> float:
        return self.probs[self.label]

    def to_dict(self) -> dict:
        return {"label": self.label, "confidence": round(self.confidence, 6), "unsure": self.confidence < UNSURE,
                "probabilities": {str(k): round(v, 6) for k, v in self.probs.items()}}


@dataclass
class Outcome:
    """What `predict` says about one image: a prediction, or why there is none (blank, or unreadable)."""
    image: str
    prediction: Prediction | None = None
    blank: bool = False
    error: str | None = None

    def to_dict(self) -> dict:
        if self.prediction is not None:
            return {"image": self.image, **self.prediction.to_dict()}
        if self.blank:
            return {"image": self.image, "label": None, "blank": True, "message": self.error}
        return {"image": self.image, "label": None, "error": self.error}


class Classifier:
    """A saved model ready to predict: `Classifier.load(run_or_file).predict([image, ...])`."""

    def __init__(self, model: torch.nn.Module, meta: dict):
        self.model, self.meta, self.classes = model.eval(), meta, list(meta["classes"])
        self.digits = all(isinstance(c, int) for c in self.classes)  # MNIST's classes are the digits themselves
        self.temperature = float(meta.get("temperature") or 1.0)  # fitted on the validation split at training

    @classmethod
    def load(cls, run_or_file: str | Path) -> "Classifier":
        """The model of a run folder or a .safetensors file."""
        return cls(*load_model(resolve_model_file(run_or_file)))

    @torch.inference_mode()
    def predict_inputs(self, inputs: torch.Tensor, bs: int = 1024) -> torch.Tensor:
        """Calibrated probabilities (N, C) for prepared inputs (N, 28, 28) in [0, 1], in batches of bs: the
        model's, at the temperature stored with it (models saved before calibration: as they are)."""
        if not len(inputs):
            return torch.empty(0, len(self.classes))
        probs = class_probs(self.model, inputs, bs)
        return probs if self.temperature == 1.0 else apply_temperature(probs, self.temperature)

    def prepare(self, source) -> torch.Tensor:
        """One image as this model's input (28, 28): a digit made to look like MNIST's, or a whole object."""
        return prepare_image(source) if self.digits else prepare_whole(source)

    def predictions(self, inputs: torch.Tensor) -> list[Prediction]:
        """A Prediction for each prepared input (N, 28, 28)."""
        return [Prediction(self.classes[int(p.argmax())], dict(zip(self.classes, p.tolist())), x)
                for p, x in zip(self.predict_inputs(inputs), inputs)]

    def predict(self, sources: list) -> list[Prediction]:
        """Prepare each image and predict them in one batch. Raises ImageError/BlankImageError per bad image."""
        return self.predictions(torch.stack([self.prepare(s) for s in sources]))

    def predict_many(self, sources: list) -> list[Outcome]:
        """Like predict, but never raises for one image: a blank or unreadable image gets an Outcome saying so."""
        outcomes, inputs, slots = [], [], []
        for s in sources:
            name = str(s) if isinstance(s, (str, Path)) else "image"
            try:
                inputs.append(self.prepare(s))
                slots.append(len(outcomes))
                outcomes.append(Outcome(name))
            except BlankImageError as e:
                outcomes.append(Outcome(name, blank=True, error=str(e)))
            except DigitlabError as e:
                outcomes.append(Outcome(name, error=str(e)))
        if inputs:
            for i, p in zip(slots, self.predictions(torch.stack(inputs))):
                outcomes[i].prediction = p
        return outcomes


def accuracy_on(clf: Classifier, images: list, labels: np.ndarray) -> dict:
    """Prepare every image as `predict` does and score the predictions against the labels (digits)."""
    outcomes = clf.predict_many(list(images))
    preds = np.array([o.prediction.label if o.prediction else -1 for o in outcomes])
    labels = np.asarray(labels)
    per_digit = {str(d): float((preds[labels == d] == d).mean()) for d in sorted(set(labels.tolist()))}
    return {"n": len(labels), "accuracy": float((preds == labels).mean()), "no_answer": int((preds == -1).sum()),
            "per_digit": per_digit}
