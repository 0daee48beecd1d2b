"""A saved model's predictions on a user's own images: `Classifier.load(run_or_file).predict([image, ...])`.

Each image is made to look like the model's training images, then the model scores them all in one batch: the way
its training images were read, saved in the model file (`data/preparation.py`: MNIST's handwriting preparation for
digits, whole objects for Fashion-MNIST, exactly the folder loader's reading for an image-folder model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import ood
from .data.idx import read_idx
from .data import preparation
from .data.images import IMAGE_SUFFIXES, BlankImageError, expand_paths
from .data.tasks import VALID_SIZE, TaskData, load_task, task_of
from .errors import DataError, DigitlabError
from .calibration import apply_temperature
from .inference import class_probs
from .runs import resolve_model_file
from .weights import load_model_and_extras, save_model

UNSURE = 0.5  # a top probability below this is reported as a guess


@dataclass
class Prediction:
    """One image's predicted class, every class's probability, and the input the model saw."""
    label: int | str                 # the class: a digit (MNIST) or a name ("Sneaker"); the best guess
    probs: dict[int | str, float]    # class -> probability
    input: torch.Tensor        # the 28x28 image the model saw
    ood_score: float | None = None   # the model's detector's score (larger: less like its training images)
    not_a_digit: bool = False        # the score is over the detector's threshold: not one of the classes

    @property
    def confidence(self) -> float:
        return self.probs[self.label]

    def to_dict(self) -> dict:
        return {"label": self.label, "confidence": round(self.confidence, 6), "unsure": self.confidence < UNSURE,
                "not_a_digit": self.not_a_digit,
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
        # the model split where its features are (the same modules: no copy); the whole model where none are needed
        self._parts = (None, self.model) if detector is None or not detector.needs_features \
            else ood.split_head(self.model)

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
        logits, features = ood.logits_and_features(*self._parts, inputs, bs)
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
                           None if scores is None else float(s), bool(f))
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


def accuracy_on(clf: Classifier, images: list, labels: np.ndarray) -> dict:
    """Prepare every image as `predict` does and score the predictions against the labels (digits)."""
    outcomes = clf.predict_many(list(images))
    preds = np.array([o.prediction.label if o.prediction else -1 for o in outcomes])
    labels = np.asarray(labels)
    per_digit = {str(d): float((preds[labels == d] == d).mean()) for d in sorted(set(labels.tolist()))}
    return {"n": len(labels), "accuracy": float((preds == labels).mean()), "no_answer": int((preds == -1).sum()),
            "per_digit": per_digit}


def task_data_for(meta: dict, data: str | Path | None = None, valid_size: int | None = None) -> tuple[str, TaskData]:
    """(task, TaskData) a saved model was trained on: its config's data folder, classes and splits (or `data`
    for a data set that has moved; `valid_size` for another validation split). A model whose classes the data
    does not have is refused."""
    cfg = meta.get("config") or {}
    task = meta.get("task") or task_of(meta["classes"])
    root = data if data is not None else cfg.get("data")
    size = cfg.get("valid_size", 0) if valid_size is None else valid_size
    task_data = load_task(task, root, size, cfg.get("classes"), cfg.get("valid_pct"))
    if list(task_data.classes) != list(meta["classes"]):
        where = root or "the shipped MNIST"
        raise DataError(f"the model's classes {meta['classes']} are not those of the data in {where} "
                        f"({list(task_data.classes)}); pass --data with the folder it was trained on.")
    return task, task_data


def attach_detector(run_or_file: str | Path, name: str = ood.DEFAULT, accept: float = ood.ACCEPT,
                    data: str | Path | None = None, out: str | Path | None = None,
                    fit_images: int | None = ood.FIT_IMAGES) -> tuple[Path, ood.Detector]:
    """Fit an out-of-distribution detector for a saved model and write it into the model file (or `out`): the
    statistics on the training split, the threshold on the validation split. A model whose config has no
    validation split (trained on all training images, as the shipped model was) gets the fixed split of
    data/tasks.py (VALID_SIZE images, seed 0); its threshold is then set on images it was trained on, which the
    detector's info says (`valid_in_training`)."""
    path = resolve_model_file(run_or_file)
    model, meta, _ = load_model_and_extras(path)
    cfg = meta.get("config") or {}
    own_valid = int(cfg.get("valid_size") or 0) > 0 or bool(cfg.get("valid_pct")) or \
        (meta.get("task") == "3v7" and not cfg.get("classes"))
    _, task_data = task_data_for(meta, data, None if own_valid else VALID_SIZE)
    detector = ood.fit_detector(model, task_data, name, accept, fit_images)
    if not own_valid and detector.info["threshold_on"] == "valid":
        detector.info["valid_in_training"] = True
    target = Path(out) if out is not None else path
    save_model(model, target, {**meta, ood.META_KEY: detector.to_meta()}, extra=detector.tensors())
    return target, detector


OOD_IDX = ("t10k-images-idx3-ubyte", "train-images-idx3-ubyte")  # an IDX folder's images, test set first


def ood_images(clf: Classifier, source: str | Path) -> tuple[torch.Tensor, dict]:
    """Out-of-distribution images as the model's inputs (N, 28, 28) in [0, 1], and what they were: an IDX
    images file, a folder of IDX files (its test images, t10k-images-idx3-ubyte[.gz]), or a folder of image
    files, each prepared as `predict` prepares it (blank ones are left out and counted)."""
    source = Path(source)
    idx_file = next((source / (n + gz) for n in OOD_IDX for gz in (".gz", "") if (source / (n + gz)).is_file()),
                    None) if source.is_dir() else source if source.is_file() and \
        source.suffix.lower() not in IMAGE_SUFFIXES else None
    if idx_file is not None:
        images = read_idx(idx_file)
        if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28) or images.dtype != torch.uint8:
            raise DataError(f"{idx_file}: expected 28x28 uint8 images, got {images.dtype} {tuple(images.shape)}.")
        return images.float() / 255, {"source": str(idx_file), "kind": "idx", "n": len(images), "blank": 0}
    if not source.exists():
        raise DataError(f"{source}: no such file or folder. Give an IDX images file, a folder of IDX files or a "
                        f"folder of images.")
    inputs, blank = [], 0
    for path in image_files([source]):
        try:
            inputs.append(clf.prepare(path))
        except BlankImageError:
            blank += 1
    if not inputs:
        raise DataError(f"{source}: every image is blank; nothing to score.")
    return torch.stack(inputs), {"source": str(source), "kind": "images", "n": len(inputs), "blank": blank}


def evaluate_ood(clf: Classifier, source: str | Path, data: str | Path | None = None) -> dict:
    """How well the model's detector tells its test images (in distribution) from the images in `source`:
    AUROC, FPR at 95% TPR, the share of `source` flagged, of test images flagged, and the test accuracy of the
    accepted ones (ood.ood_report)."""
    if clf.detector is None:
        raise DataError("this model has no out-of-distribution detector in its file; add one with "
                        "`digitlab ood-fit RUN` (runs trained since it exists have one).")
    out_images, about = ood_images(clf, source)
    _, task_data = task_data_for(clf.meta, data)
    test = task_data.final
    probs, in_scores = clf.predict_scores(test.images.float() / 255)
    _, out_scores = clf.predict_scores(out_images)
    correct = probs.argmax(1) == test.labels
    return {**ood.ood_report(clf.detector, in_scores, out_scores, correct), "out": about,
            "in": {"split": "test" if task_data.test is not None else "valid", "n": len(test),
                   "dataset": (task_data.info or {}).get("name")}, "detector_info": clf.detector.info}
