"""A model's card, from its weights file's own metadata: what the served page's /api/model answers and what the
exported page shows (architecture, parameters, training data, test accuracy, when trained, classes)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .predict import Classifier

TRAINING_DATA = {"digits": "MNIST: 60000 handwritten digits 0-9 for training, scored on the 10000 test images",
                 "3v7": "MNIST 3s and 7s (fastbook's MNIST_SAMPLE): 12396 for training, scored on 2038 test images"}


def model_card(clf: Classifier, path: Path) -> dict:
    """The card of the model `clf` loaded from `path`."""
    meta = clf.meta
    return {"architecture": meta["model"], "parameters": sum(p.numel() for p in clf.model.parameters()),
            "classes": clf.classes, "task": meta.get("task"),
            "training_data": training_data(meta),
            "test_accuracy": meta.get("accuracy"), "trained": meta.get("trained"), "epochs": meta.get("epochs"),
            "config": meta.get("config"), "input": meta.get("input"), "file": path.name,
            "ood": clf.detector.to_meta() if clf.detector is not None else None,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def training_data(meta: dict) -> str:
    """What the model was trained on, in words: MNIST's tasks as before, another data set by its name and folder."""
    data = meta.get("dataset") or {}
    if data.get("name") in (None, "MNIST"):
        return TRAINING_DATA.get(meta.get("task"), meta.get("task"))
    return f"{data['name']} ({data.get('root')}): {len(meta['classes'])} classes"
