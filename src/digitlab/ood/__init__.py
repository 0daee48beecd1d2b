"""Digit or not: out-of-distribution detectors that score how unlike the training images an input is.

Each detector turns a model's logits and penultimate features (the input of its last nn.Linear) into one score
per image, larger meaning less like a digit; an image whose score is above the detector's threshold is "not a
digit". The threshold is set on the validation split so that a chosen share of its digits (ACCEPT, 99%) is
accepted; the test split is never read for it.

Detectors (from the literature; compared in docs/predict.md, benchmarks/ood.py):
- msp:          -max softmax probability (Hendrycks & Gimpel 2017).
- energy:       -logsumexp of the logits (Liu et al. 2020).
- mahalanobis:  the smallest Mahalanobis distance of the features to a class mean, with one covariance shared
                by the classes, both fitted on the training split (Lee et al. 2018, without input perturbation).
- knn:          distance of the L2-normalised features to their k-th nearest neighbour in a bank of normalised
                training features (Sun et al. 2022).
- energy_mahalanobis: the sum of the energy and Mahalanobis scores, each standardised by its mean and standard
                deviation on the training split: one looks at the scores, the other at the features (in the
                spirit of ViM, Wang et al. 2022, which adds a feature-space score to the energy).
- exposure:     a small network on the features and logits trained to tell digits from non-digits that digitlab
                draws itself, letters and Fashion-MNIST training images (outlier exposure, Hendrycks et al. 2019,
                as a reject option: exposure.py).
- exposure_map: four such heads, averaged, reading beside the features a pooled inner map of the model (where
                strokes meet and turn), trained also on digits drawn as on the page: more scribbles flagged; the
                shipped model's, chosen on validation (issue 27, docs/predict.md).

The package: methods.py (the detectors by name, in a registry), features.py (the model's penultimate features),
detector.py (a fitted detector and its threshold), exposure.py (the learned head), fitting.py (fitting on a task's splits), metrics.py (AUROC,
FPR). Pure: tensors in, scores out. The fitted statistics travel as tensors in the model's safetensors file
(`weights.save_model(..., extra=...)`), the name and threshold in its metadata (`ood` key)."""

from .detector import ACCEPT, META_KEY, PREFIX, Detector, ScoredModel, threshold_for
from .features import detector_parts, logits_and_features, model_scorer, split_head
from .fitting import DEFAULT, FIT_IMAGES, fit_detector, fit_or_fallback, for_record, spread
from .methods import (DETECTORS, KNN_BANK, KNN_K, MAX_FEATURES, METHODS, Method, OodError, fit_stats, knn_distance,
                      mahalanobis, score)
from .metrics import auroc, fpr_at_tpr, ood_report

__all__ = ["ACCEPT", "DEFAULT", "DETECTORS", "FIT_IMAGES", "KNN_BANK", "KNN_K", "MAX_FEATURES", "META_KEY", "METHODS",
           "PREFIX", "Detector", "Method", "OodError", "ScoredModel", "auroc", "fit_detector", "fit_or_fallback",
           "fit_stats", "for_record", "fpr_at_tpr", "knn_distance", "logits_and_features", "mahalanobis",
           "model_scorer", "detector_parts", "ood_report", "score", "spread", "split_head", "threshold_for"]
