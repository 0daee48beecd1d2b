"""Choosing "digit or not" on validation only (issue 27): each model, each detector, each accepted share.

For every model given (the shipped model first; then, say, runs trained or fine-tuned with outlier exposure:
TrainConfig's `outlier_exposure`, `lowres`, `init_from`), every detector of digitlab.ood (or those of --detectors)
and an accepted share of 99%, 99.25% or 99.5% of the validation digits, it fits the detector as `digitlab ood-fit`
does (threshold on MNIST's validation split; fitted once, thresholded at each share) and measures, on validation
sets only, all prepared as `predict` prepares a picture:

- digits that must be accepted: MNIST's validation digits, the same digits scanned at 8x8 (data/lowres.py, the
  UCI set's kind of input) and drawn the page's way (data.nondigits, VALID_SEED);
- non-digits that must be flagged: shapes, open strokes, scribbles (VALID_SEED), letters in the valid fonts and
  Fashion-MNIST training images 50000-51999 (data/outliers.py's valid part).

The choice: among settings whose model is as accurate on the validation digits as the first model given (the
shipped one: issue 27 allows no drop), that accept at least 97% of the 8x8 scans and get at least 98% of the
drawn digits right and accepted, each by two standard errors of its validation share (`clears`), at a share of at
least 99.25% (SAFE_ACCEPT), the one whose worst-flagged kind of non-digit is flagged most (ties: the larger
accepted share). Nothing here reads a test image; benchmarks/nondigits.py then scores the choice once on the test sets.

    python -m benchmarks.exposure RUN_OR_FILE [RUN_OR_FILE ...] [--n 600] [--name exposure-choice] [--detectors A,B]

Record: results/<name>.json.
"""

from __future__ import annotations

import argparse

import torch

from digitlab import ood
from digitlab.data import nondigits
from digitlab.data.lowres import low_resolution
from digitlab.data.outliers import choice_sets, prepared
from digitlab.data.tasks import load_task
from digitlab.hardware import machine_class
from digitlab.runs import resolve_model_file
from digitlab.weights import load_model

from .common import write_record

ACCEPTS = (0.99, 0.9925, 0.995)
SAFE_ACCEPT = 0.9925   # the least share a choice may accept: at 99% of the validation digits the test's MNIST
                       # digits are expected flagged at 1%, issue 27's bar itself (the earlier designs: 0.96%)
MIN_LOWRES, MIN_DRAWN = 0.97, 0.98


def clears(share: float, n: int, bar: float) -> bool:
    """Whether a share measured on n validation pictures is over a bar by two standard errors. The fourth
    exposure_map design was chosen with its drawn digits 0.23 points over the bar (98.23% of 3,000, one standard
    error) and scored 97.70% on the test's 2,000 (results/nondigits-exposure-map-fourth.json)."""
    return share - 2 * (share * (1 - share) / n) ** 0.5 >= bar


def accept_sets(data, n: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Validation digits to accept, with labels: 8x8 scans and page drawings of MNIST's validation digits."""
    valid = data.valid
    lowres = low_resolution(valid.images, valid.labels)
    drawn = nondigits.make("drawn_digits", n, nondigits.VALID_SEED, digits=valid.images.numpy())
    return {"lowres": lowres, "drawn": (prepared(drawn), valid.labels[:n])}


def rows_for(path: str, data, accepts: dict, rejects: dict, detectors=tuple(ood.METHODS)) -> list[dict]:
    model, meta = load_model(resolve_model_file(path))
    cfg = meta.get("config") or {}
    logits, _ = ood.logits_and_features(model, data.valid.images)
    valid_accuracy = float((logits.argmax(1) == data.valid.labels).double().mean())  # one plain prediction each
    rows = []
    for name in detectors:
        try:
            det = ood.fit_detector(model, data, name, ACCEPTS[0])
        except ood.OodError as e:
            print(path, name, "skipped:", e)
            continue
        scorer = ood.model_scorer(model, name)
        in_scores = det.score(*scorer(data.valid.images))
        digits = {}  # kind -> (scores, right): each set through the model once, whatever the share
        for kind, (x, y) in accepts.items():
            logits, feats = scorer(x)
            digits[kind] = det.score(logits, feats), logits.argmax(1) == y
        others = {kind: det.score(*scorer(x)) for kind, x in rejects.items()}
        for accept in ACCEPTS:  # the threshold as fit_detector sets it for each share, on the same statistics
            det.threshold = ood.threshold_for(in_scores, accept)
            row = {"model": path, "outlier_exposure": cfg.get("outlier_exposure", 0.0), "lowres": cfg.get("lowres", 0.0),
                   "valid_accuracy": valid_accuracy, "detector": name, "accept": accept, "threshold": det.threshold}
            for kind, (scores, right) in digits.items():
                flagged = det.flag(scores)
                row[f"{kind}_accepted"] = float((~flagged).double().mean())
                row[f"{kind}_right_and_accepted"] = float((right & ~flagged).double().mean())
            for kind, out_scores in others.items():
                row[f"{kind}_flagged"] = float(det.flag(out_scores).double().mean())
                row[f"{kind}_auroc"] = ood.auroc(in_scores, out_scores)
            row["worst_flagged"] = min(row[f"{k}_flagged"] for k in rejects)
            row["eligible"] = (clears(row["lowres_accepted"], len(accepts["lowres"][0]), MIN_LOWRES)
                               and clears(row["drawn_right_and_accepted"], len(accepts["drawn"][0]), MIN_DRAWN)
                               and accept >= SAFE_ACCEPT)
            rows.append(row)
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--n", type=int, default=600, help="pictures of each made kind")
    ap.add_argument("--name", default="exposure-choice", help="record name under benchmarks/results/")
    ap.add_argument("--detectors", default=",".join(ood.METHODS), help="comma-separated; default: every one")
    args = ap.parse_args(argv)
    data = load_task("digits")
    accepts, rejects = accept_sets(data, args.n), choice_sets(args.n)
    detectors = args.detectors.split(",")
    rows = [r for path in args.models for r in rows_for(path, data, accepts, rejects, detectors)]
    for r in rows:  # no model less accurate than the first (the shipped one)
        r["eligible"] = r["eligible"] and r["valid_accuracy"] >= rows[0]["valid_accuracy"]
    eligible = [r for r in rows if r["eligible"]]
    chosen = max(eligible, key=lambda r: (r["worst_flagged"], r["accept"])) if eligible else None
    print("chosen:", chosen)
    record = {"claim": "digit-or-not settings chosen on validation sets only (issue 27)", "n": args.n,
              "accept_sets": {k: len(v[0]) for k, v in accepts.items()}, "reject_sets": {k: len(v) for k, v in rejects.items()},
              "rule": f"eligible: validation accuracy at least the first model's, lowres accepted >= {MIN_LOWRES} and "
                      f"drawn right and accepted >= {MIN_DRAWN}, each by two standard errors, accepted share >= "
                      f"{SAFE_ACCEPT}; "
                      "chosen: the largest worst_flagged, then the larger accept",
              "rows": rows, "chosen": chosen, "machine_class": machine_class()}
    print(write_record(args.name, record))


if __name__ == "__main__":
    main()
