"""Fitting a detector for a trained model on its task's splits: statistics on training images, the threshold on
validation images (the test split is never read), and what a new run's model file stores."""

from __future__ import annotations

import torch
from torch import nn

from ..data.mnist import Split
from ..data.tasks import TaskData, of_digits
from .detector import ACCEPT, META_KEY, Detector, threshold_for
from .exposure import HEADS_MAP, HIDDEN_MAP, head_input, train_head
from .features import model_scorer
from .methods import OodError, fit_stats, method

DEFAULT = "mahalanobis"   # chosen by measurement with the shipped model: benchmarks/results/ood.json, docs/predict.md


FIT_IMAGES = 10000   # training images the statistics are fitted on (evenly spread): enough for a 256-wide
                     # covariance, and it keeps the fit to seconds after a run on 2 CPU cores; exposure_map reads
                     # every training digit (_fit)


def spread(split: Split, n: int | None) -> Split:
    """At most n images of a split, evenly spread over it (the same ones every time)."""
    if n is None or len(split) <= n:
        return split
    idx = torch.linspace(0, len(split) - 1, n).round().long()
    return Split(split.images[idx], split.labels[idx])


def fit_detector(model: nn.Module, data: TaskData, name: str = DEFAULT, accept: float = ACCEPT,
                 fit_images: int | None = FIT_IMAGES) -> Detector:
    """Fit detector `name` for a trained model: statistics on its training split (at most `fit_images`, evenly
    spread; exposure_map reads every one), then the threshold that accepts a share `accept` of the validation
    split. The test split is never read. A task without validation images of its own (valid_size=0, or the book's
    3-vs-7 split, whose validation images are the test file's) gets its threshold from the training images,
    labelled so (`threshold_on: "train"`): in-sample, so it rejects somewhat more new digits than `accept` says."""
    method(name)  # an unknown name is refused before any work
    if not 0.5 <= accept < 1:
        raise OodError(f"the accepted share of validation digits must be in [0.5, 1), got {accept}.")
    was_training = model.training
    model.eval()
    try:
        return _fit(model, data, name, accept, fit_images)
    finally:
        model.train(was_training)


def _fit(model: nn.Module, data: TaskData, name: str, accept: float, fit_images: int | None) -> Detector:
    scorer = model_scorer(model, name)
    train = spread(data.train, None if method(name).inner_map else fit_images)  # exposure_map: every digit
    logits, features = scorer(train.images)
    if method(name).needs_outliers:
        stats = exposure_stats(scorer, train, data.classes, logits, features, method(name).inner_map)
    else:
        stats = fit_stats(name, features, train.labels, len(data.classes), logits) if features is not None else {}
    # the threshold never reads test images: the book's 3-vs-7 "validation" split is the test file's digits
    on, held = ("valid", data.valid) if len(data.valid) and not data.valid_is_test else ("train", train)
    detector = Detector(name, stats)
    held_scores = detector.score(*scorer(held.images)) if held is not train else detector.score(logits, features)
    detector.threshold = threshold_for(held_scores, accept)
    detector.info = {"accept": accept, "threshold_on": on, "n_threshold": len(held), "fitted_on": "train",
                     "n_fit": len(train)}
    return detector


def exposure_stats(scorer, train: Split, classes, logits: torch.Tensor, features: torch.Tensor,
                   extended: bool = False) -> dict:
    """The "not a digit" head (exposure.py) for a model of digits: trained on the training digits and their 8x8
    scans against data/outliers.py's train part of non-digits, each through the model.

    `extended` (exposure_map, designed and chosen with them on validation, docs/predict.md): it reads the features
    alone; its digits are every training digit, half of them scanned, and every one drawn the page's way (without
    drawings the head learns the pen as much as the shapes, and flags drawn digits; on validation, all the
    training digits rather than 10,000 plain and 20,000 drawn flagged 98.5% of the scribbles against 97.4%, at 99%
    accepted, in experiments not recorded); it
    sees nine times the scribbles (the hardest kind) and Fashion-MNIST's images also as the IDX file holds them (a
    head that saw clothes only prepared let a twentieth of them through as raw 28x28 arrays); four heads side by
    side, averaged. `exposure` keeps the sets its head was first fitted on."""
    from ..data import nondigits  # deferred: only this detector draws and prepares pictures
    from ..data.lowres import low_resolution  # deferred: as above
    from ..data.outliers import EXTENDED_COUNTS, TRAIN_COUNTS, exposure_set, prepared  # deferred: as above

    if not of_digits(classes):
        raise OodError("the exposure detectors learn non-digits (shapes, letters, clothes): they are for models of "
                       "digits; use mahalanobis or energy for this model.")
    inputs = (lambda logits, features: features) if extended else head_input
    scans, _ = low_resolution(train.images[::2], train.labels[::2])
    digits = [inputs(logits, features), inputs(*scorer(scans))]
    if extended:
        drawn = nondigits.make("drawn_digits", len(train), nondigits.TRAIN_SEED, digits=train.images.numpy())
        digits.append(inputs(*scorer(prepared(drawn))))
    others, _ = exposure_set(EXTENDED_COUNTS if extended else TRAIN_COUNTS, as_is=extended)
    width = {"hidden": HIDDEN_MAP, "heads": HEADS_MAP} if extended else {}
    return train_head(torch.cat(digits), inputs(*scorer(others)), **width)


def fit_or_fallback(model: nn.Module, data: TaskData, name: str = DEFAULT, **kw) -> Detector:
    """fit_detector, falling back to the energy score (which needs only the logits) for a model whose features
    the chosen detector cannot use (the reason is recorded in the detector's info)."""
    try:
        return fit_detector(model, data, name, **kw)
    except OodError as e:
        if name == "energy":
            raise
        detector = fit_detector(model, data, "energy", **kw)
        detector.info["fallback"] = f"{name}: {e}"
        return detector


def for_record(model: nn.Module, data: TaskData | None, name: str = DEFAULT) -> tuple[dict, dict[str, torch.Tensor]]:
    """What runs.record_run adds to a new run's model file: ({META_KEY: detector metadata}, statistics tensors);
    nothing for a run without its data."""
    if data is None or not len(data.train):
        return {}, {}
    detector = fit_or_fallback(model, data, name)
    return {META_KEY: detector.to_meta()}, detector.tensors()
