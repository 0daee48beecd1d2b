"""A saved model's predictions on a user's own images: `Classifier.load(run_or_file).predict([image, ...])`.

Each image is made to look like the model's training images, then the model scores them all in one batch: the way
its training images were read, saved in the model file (`data/preparation.py`: MNIST's handwriting preparation for
digits, whole objects for Fashion-MNIST, exactly the folder loader's reading for an image-folder model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import ood
from .data import preparation
from .data.images import IMAGE_SUFFIXES, BlankImageError, expand_paths
from .errors import DigitlabError
from .calibration import apply_temperature
from .inference import class_probs
from .runs import resolve_model_file
from .weights import load_model_and_extras

UNSURE = 0.5  # a top probability below this is reported as a guess


def outsider_words(digits: bool) -> str:
    """What the answer calls an image that is none of the model's classes: a model of digits says "not a digit",
    any other model (Fashion-MNIST, an image folder of letters) "not one of these classes"."""
    return "not a digit" if digits else "not one of these classes"


def verdict_fields(label, flagged: bool, digits: bool) -> dict:
    """The detector's verdict in the words of the model, the same in `predict --json`, the API and the page:
    `none_of_the_classes`, and `verdict` (what to say: the label, or the outsider's words). `not_a_digit` is kept
    for a model of digits, the name clients before named classes read."""
    fields = {"none_of_the_classes": flagged, "verdict": outsider_words(digits) if flagged else str(label)}
    return {**fields, "not_a_digit": flagged} if digits else fields


@dataclass
class Prediction:
    """One image's predicted class, every class's probability, and the input the model saw."""
    label: int | str                 # the class: a digit (MNIST) or a name ("Sneaker"); the best guess
    probs: dict[int | str, float]    # class -> probability
    input: torch.Tensor        # the 28x28 image the model saw
    ood_score: float | None = None   # the model's detector's score (larger: less like its training images)
    flagged: bool = False            # the score is over the detector's threshold: none of the classes
    digits: bool = True              # a model of digits ("not a digit") or of named classes ("not one of these")

    @property
    def confidence(self) -> float:
        return self.probs[self.label]

    def to_dict(self) -> dict:
        return {"label": self.label, "confidence": round(self.confidence, 6), "unsure": self.confidence < UNSURE,
                **verdict_fields(self.label, self.flagged, self.digits),
                "ood_score": None if self.ood_score is None else round(self.ood_score, 6),
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

    def __init__(self, model: torch.nn.Module, meta: dict, extras: dict[str, torch.Tensor] | None = None,
                 where: str = "this model"):
        self.model, self.meta, self.classes = model.eval(), meta, list(meta["classes"])
        self.digits = all(isinstance(c, int) for c in self.classes)  # MNIST's classes are the digits themselves
        # how a picture becomes an input, as the training images were read (data/preparation.py)
        self.preparation = preparation.of_model(meta, where)
        self.temperature = float(meta.get("temperature") or 1.0)  # fitted on the validation split at training
        # the detector named in meta, with its statistics from `extras` (none given: the model alone, no detector)
        self.set_detector(ood.Detector.from_meta(meta, extras) if extras is not None else None)

    def set_detector(self, detector: ood.Detector | None) -> None:
        """Use this out-of-distribution detector (None: none; every image is taken as one of the classes)."""
        self.detector = detector
        # the model split where its features are (the same modules: no copy); none where no features are needed
        self._parts = None if detector is None else ood.detector_parts(self.model, detector.name)

    @classmethod
    def load(cls, run_or_file: str | Path) -> "Classifier":
        """The model of a run folder or a .safetensors file (with its out-of-distribution detector, if any)."""
        path = resolve_model_file(run_or_file)
        return cls(*load_model_and_extras(path), where=str(path))

    @torch.inference_mode()
    def predict_inputs(self, inputs: torch.Tensor, bs: int = 1024) -> torch.Tensor:
        """Calibrated probabilities (N, C) for prepared inputs (N, 28, 28) in [0, 1], in batches of bs: the
        model's, at the temperature stored with it (models saved before calibration: as they are)."""
        if not len(inputs):
            return torch.empty(0, len(self.classes))
        probs = class_probs(self.model, inputs, bs)
        return probs if self.temperature == 1.0 else apply_temperature(probs, self.temperature)

    @torch.inference_mode()
    def predict_scores(self, inputs: torch.Tensor, bs: int = 1024) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(calibrated probabilities (N, C), detector scores (N,) or None without a detector) for prepared inputs
        (N, 28, 28) in [0, 1]: one forward pass gives both."""
        if not len(inputs):
            return torch.empty(0, len(self.classes)), None if self.detector is None else torch.empty(0)
        logits, features = ood.logits_and_features(self.model, inputs, self._parts, bs)
        probs = torch.softmax(logits, 1)
        if self.temperature != 1.0:
            probs = apply_temperature(probs, self.temperature)
        return probs, None if self.detector is None else self.detector.score(logits, features)

    def prepare(self, source) -> torch.Tensor:
        """One image as this model's input (28, 28), prepared as its training images were (data/preparation.py)."""
        return preparation.prepare(self.preparation, source)

    def predictions(self, inputs: torch.Tensor) -> list[Prediction]:
        """A Prediction for each prepared input (N, 28, 28), flagged not a digit where the detector says so."""
        probs, scores = self.predict_scores(inputs)
        flags = self.detector.flag(scores).tolist() if scores is not None else [False] * len(inputs)
        return [Prediction(self.classes[int(p.argmax())], dict(zip(self.classes, p.tolist())), x,
                           None if scores is None else float(s), bool(f), self.digits)
                for p, x, s, f in zip(probs, inputs, scores if scores is not None else [None] * len(inputs), flags)]

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


def image_files(paths: list[str | Path]) -> list[Path]:
    """Files as given; a folder stands for the images directly in it or, where it has none, in ImageFolder's
    layout (class folders, or train/ and valid/ of class folders), for every image under it, as fastai's
    get_image_files finds them (sorted; hidden files and folders left out)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir() and not any(f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir()):
            nested = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                            and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if nested:
                out += nested
                continue
        out += expand_paths([p])
    return out
