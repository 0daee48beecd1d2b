"""`digitlab evaluate` (a model on its test set, the UCI digits or other images) and `digitlab ood-fit`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..errors import DataError
from .app import DataOpt, app, out


@app.command()
def evaluate(run: Path = typer.Argument(..., help="A run folder or a .safetensors file."),
             uci_digits: bool = typer.Option(False, "--uci-digits", help="Score on the 1797 UCI handwritten digits "
                                             "(not MNIST; shipped inside scikit-learn) through predict's preprocessing."),
             ood: Optional[Path] = typer.Option(None, "--ood", help="Images that are not the model's classes "
                                                "(an IDX images file, a folder of IDX files, or a folder of "
                                                "images): how well its detector tells them from its test images."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON."),
             data: Optional[Path] = DataOpt):
    """Re-score a saved model on the test set of its task and data set (the folder in its config, or --data):
    accuracy, loss, accuracy per class and the confusion matrix (rows actual, columns predicted). With --ood:
    its "not a digit" detector on those images against its test images (AUROC, FPR at 95% TPR, shares flagged).

    Example: [bold]digitlab evaluate runs/20261126-120000-digits-cnn[/]
    Example: [bold]digitlab evaluate runs/my-run --uci-digits[/]
    Example: [bold]digitlab evaluate runs/my-run --ood /usr/share/datasets/fashion-mnist[/]
    Example: [bold]digitlab evaluate runs/fashion --data /usr/share/datasets/fashion-mnist[/]
    """
    from ..console import confusion_table, dict_table  # deferred: keeps --help fast
    from ..interpret import Interpretation  # deferred: keeps --help fast
    from ..predict import Classifier  # deferred: keeps --help fast

    clf = Classifier.load(run)
    if ood is not None:
        return evaluate_ood_cmd(clf, ood, data, as_json)
    if uci_digits:
        return evaluate_uci(clf, as_json)
    task, task_data = model_task_data(clf, data)
    interp = Interpretation.from_model(clf.model, task_data.final, clf.classes)
    has_test = task_data.test is not None and len(task_data.valid) > 0
    valid = Interpretation.from_model(clf.model, task_data.valid, clf.classes).accuracy if has_test else None
    summary = {"task": task, "dataset": (task_data.info or {}).get("name"), "accuracy": interp.accuracy,
               "valid_accuracy": valid, "test_accuracy": interp.accuracy if task_data.test is not None else None,
               "errors": int((interp.preds != interp.actual).sum()),
               "n": len(interp.actual), "loss": interp.losses.mean().item(), **interp.to_dict()}
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    split = "test" if task_data.test is not None else "valid"
    out.print(f"{summary['dataset']} {task}: {split} accuracy {summary['accuracy']:.4f} ({summary['errors']} errors in "
              f"{summary['n']}), loss {summary['loss']:.4f}"
              + (f"; valid accuracy {valid:.4f}" if valid is not None else ""), highlight=False)
    out.print(dict_table(interp.per_class_accuracy(), title=f"accuracy per {'digit' if clf.digits else 'class'}"))
    out.print(confusion_table(interp.confusion_matrix(), interp.classes))


def model_task_data(clf, data: Optional[Path]):
    """(task, TaskData) a saved model was trained on: its own config's data folder, classes and splits (or --data
    for a data set that has moved); a model whose classes the data does not have is refused."""
    from ..assess import task_data_for  # deferred: keeps --help fast

    return task_data_for(clf.meta, data)


def evaluate_uci(clf, as_json: bool):
    """Accuracy on the UCI digits (8x8, 43 writers), each image prepared as `predict` prepares a user's image."""
    from ..console import dict_table  # deferred: keeps --help fast
    from ..data.uci import uci_digits  # deferred: keeps --help fast
    from ..assess import accuracy_on  # deferred: keeps --help fast

    if not clf.digits:
        names = ", ".join(map(str, clf.classes))
        raise DataError(f"--uci-digits scores a model of digits; this one tells apart {names}.")
    images, labels = uci_digits()
    keep = np.isin(labels, clf.classes)
    res = {"dataset": "UCI handwritten digits (scikit-learn load_digits)",
           **accuracy_on(clf, list(images[keep]), labels[keep])}
    if as_json:
        print(json.dumps(res, indent=2))
        return
    out.print(f"UCI digits: accuracy {res['accuracy']:.4f} on {res['n']} images ({res['no_answer']} without an "
              f"answer)", highlight=False)
    out.print(dict_table(res["per_digit"], title="accuracy per digit"))


def evaluate_ood_cmd(clf, source: Path, data: Optional[Path], as_json: bool) -> None:
    """`evaluate --ood`: the detector's report, as JSON or in words."""
    from ..assess import evaluate_ood  # deferred: keeps --help fast

    r = evaluate_ood(clf, source, data)
    if as_json:
        print(json.dumps(r, indent=2))
        return
    what = "digits" if clf.digits else "images of its classes"
    out.print(f"detector {r['detector']} (threshold {r['threshold']:.4g}, set to accept "
              f"{r['detector_info'].get('accept', 0):.1%} of the {r['detector_info'].get('threshold_on')} split): "
              f"{r['out']['n']} images from {r['out']['source']} against {r['n_in']} {r['in']['split']} {what}",
              highlight=False)
    blank = f" ({r['out']['blank']} blank images left out)" if r["out"]["blank"] else ""
    out.print(f"AUROC {r['auroc']:.4f}; FPR at 95% TPR {r['fpr_at_95_tpr']:.2%}; flagged as not one of the "
              f"classes: {r['out_flagged']:.2%} of those images{blank}, {r['in_flagged']:.2%} of the {r['in']['split']} "
              f"{what}; accuracy of the accepted ones {r['accuracy_accepted']:.4f} (all: {r['accuracy_all']:.4f})",
              highlight=False)


@app.command("ood-fit")
def ood_fit(run: Path = typer.Argument(..., help="A run folder or a .safetensors file."),
            detector: str = typer.Option("mahalanobis", "--detector", help="mahalanobis (the default, chosen by "
                                         "benchmarks/ood.py), exposure_map (the shipped model's, fitted with --accept "
                                         "0.995: learns non-digits from the features and an inner map, minutes on "
                                         "2 cores; models of digits), "
                                         "exposure (the same on the features alone), energy_mahalanobis, knn, "
                                         "energy or msp."),
            accept: float = typer.Option(0.99, "--accept", help="Share of validation digits the threshold accepts."),
            dest: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the model with its detector here "
                                                "(default: into the model file itself)."),
            data: Optional[Path] = DataOpt):
    """Add (or replace) the "not a digit" detector of a saved model: statistics fitted on its training split,
    the threshold set on its validation split (a model trained without one: the fixed 5000-image split).
    Runs trained since the detector exists already have one.

    Example: [bold]digitlab ood-fit src/digitlab/pretrained/digits-cnn.safetensors[/]
    Example: [bold]digitlab ood-fit runs/my-run --detector energy --accept 0.995[/]
    """
    from ..assess import attach_detector  # deferred: keeps --help fast

    path, det = attach_detector(run, detector, accept, data, dest)
    note = " (the model was trained on those images)" if det.info.get("valid_in_training") else ""
    out.print(f"wrote {path}: detector {det.name}, threshold {det.threshold:.4g} accepting {accept:.1%} of "
              f"{det.info['n_threshold']} {det.info['threshold_on']} images{note}; statistics from "
              f"{det.info['n_fit']} training images", highlight=False)
