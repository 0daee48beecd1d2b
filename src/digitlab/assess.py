"""A saved model measured beyond its own run: its accuracy on labelled pictures prepared as `predict` prepares
them, its "not a digit" detector fitted into the model file, and that detector scored against other images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import ood
from .data.idx import read_idx
from .data.images import IMAGE_SUFFIXES, BlankImageError
from .data.tasks import VALID_SIZE, TaskData, load_task, task_of
from .errors import DataError
from .predict import Classifier, image_files
from .runs import resolve_model_file
from .weights import load_model_and_extras, save_model


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
