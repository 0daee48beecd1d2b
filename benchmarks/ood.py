"""Digit or not: every out-of-distribution detector of digitlab.ood on the same sets, with one model.

In distribution: the 10,000 MNIST test digits (as the IDX files hold them). Out of distribution: the 10,000
Fashion-MNIST test images (Debian's dataset-fashion-mnist, as the IDX files hold them), and the first 2,000 of
them again as `digitlab predict` would see them as picture files (through prepare_image: cropped, strokes evened,
centred). Real handwriting that must stay accepted: the 1,797 UCI digits (scikit-learn's load_digits, through
prepare_image, as `evaluate --uci-digits` reads them).

Each detector is fitted as `digitlab ood-fit` fits it (ood.fit_detector: statistics on 10,000 training images,
threshold accepting 99% of the validation split, the model's own detector at the share it was fitted at; a model
trained without a validation split gets the fixed 5,000-image split of data/tasks.py, labelled
`valid_in_training`). Its cost is the extra time of
`Classifier.predict_scores` with the detector over the same call without one (the model alone), for a batch of
10,000 prepared inputs, for one 28x28 input at a time, and for one picture at a time (prepare_image included);
each call is timed both ways back to back, --repeats rounds, and the medians compared.
Bars (issue 19): AUROC >= 0.99, >= 95% of Fashion-MNIST flagged, <= 1% of MNIST test digits flagged, >= 97% of
UCI digits accepted, cost under 10% of prediction time.

Run: python -m benchmarks.ood [--model FILE_OR_RUN] [--fashion DIR]   (default: the shipped model)
     writes benchmarks/results/ood.json; --table prints the docs' table from that record.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from digitlab import ood
from digitlab.data.catalogue import load_dataset
from digitlab.data.images import BlankImageError, prepare_image
from digitlab.data.tasks import VALID_SIZE
from digitlab.data.uci import uci_digits
from digitlab.assess import task_data_for
from digitlab.predict import Classifier
from digitlab.runs import resolve_model_file

from .common import RESULTS, median, write_record
from .docs_tables import ood_table as table

SHIPPED = Path(__file__).resolve().parent.parent / "src" / "digitlab" / "pretrained" / "digits-cnn.safetensors"
FASHION = Path("/usr/share/datasets/fashion-mnist")
BARS = {"auroc": 0.99, "fashion_flagged": 0.95, "mnist_flagged": 0.01, "uci_accepted": 0.97, "cost": 0.10}


def prepared(images, limit: int | None = None) -> tuple[torch.Tensor, int]:
    """Images through prepare_image, as `digitlab predict` prepares picture files: (inputs, blank ones left out)."""
    out, blank = [], 0
    for img in list(images)[:limit]:
        try:
            out.append(prepare_image(img))
        except BlankImageError:
            blank += 1
    return torch.stack(out), blank


def paired_times(calls: list, bare: Classifier, clf: Classifier, rounds: int) -> tuple[float, float]:
    """Median seconds of one call without a detector (`bare`, the same model) and with it (`clf`): each call of
    `calls` (functions of a Classifier) timed both ways back to back, `rounds` times over, after a warm-up
    round, so that whatever else runs on the machine disturbs both alike."""
    times = ([], [])
    for r in range(rounds + 1):
        for call in calls:
            for slot, c in enumerate((bare, clf)):
                start = time.perf_counter()
                call(c)
                if r:
                    times[slot].append(time.perf_counter() - start)
    return median(times[0]), median(times[1])


def costs(clf: Classifier, batch: torch.Tensor, pictures: list, rounds: int) -> dict:
    """Seconds of `Classifier.predict_scores` without a detector (the model alone) and with clf's: a batch of
    10,000 inputs, one 28x28 input (200 of them), one picture file's array with prepare_image (100 of them)."""
    bare = Classifier(clf.model, {k: v for k, v in clf.meta.items() if k != ood.META_KEY})
    one = batch[:200]
    kinds = {"batch": [lambda c: c.predict_scores(batch)],
             "single": [lambda c, x=x: c.predict_scores(x[None]) for x in one],
             "picture": [lambda c, p=p: c.predict_scores(prepare_image(p)[None]) for p in pictures]}
    out = {}
    for kind, calls in kinds.items():
        out[f"{kind}_model_s"], out[f"{kind}_with_detector_s"] = paired_times(calls, bare, clf, rounds)
    return out


def fitted(model: torch.nn.Module, data, name: str, own_valid: bool, accept: float = ood.ACCEPT) -> ood.Detector:
    """Detector `name` fitted as `digitlab ood-fit` fits it, and labelled as it labels it: a model with no
    validation split of its own gets its threshold from the fixed split of data/tasks.py, which it trained on
    (`valid_in_training`), so its in-distribution figures are not from held-out images."""
    detector = ood.fit_detector(model, data, name, accept)
    if not own_valid and detector.info["threshold_on"] == "valid":
        detector.info["valid_in_training"] = True
    return detector


def measure(model: str | Path, fashion: Path, repeats: int = 5) -> dict:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    path = resolve_model_file(model)
    clf = Classifier.load(path)
    cfg = clf.meta.get("config") or {}
    own_valid = int(cfg.get("valid_size") or 0) > 0
    _, data = task_data_for(clf.meta, None, None if own_valid else VALID_SIZE)
    test = data.test if data.test is not None else data.valid
    fash = load_dataset(fashion).splits["valid"].images
    uci_images, uci_labels = uci_digits()
    uci, uci_blank = prepared(uci_images)
    fash_prep, fash_blank = prepared(fash[:2000].numpy())
    sets = {"mnist_test": test.images.float() / 255, "fashion_test": fash.float() / 255,
            "fashion_as_pictures": fash_prep, "uci_digits": uci}
    pictures = [(255 - img).repeat(4, 0).repeat(4, 1) for img in test.images[:100].numpy()]  # 112x112, dark on light
    own = clf.meta.get(ood.META_KEY) or {}
    rows = []
    for name in ood.DETECTORS:
        start = time.perf_counter()
        # the model's own detector at the share it was fitted at (the shipped one's: docs/predict.md), so that its
        # row is the file's detector; every other at ood.ACCEPT
        accept = own.get("accept", ood.ACCEPT) if name == own.get("detector") else ood.ACCEPT
        try:
            detector = fitted(clf.model, data, name, own_valid, accept)
        except ood.OodError as e:
            rows.append({"detector": name, "refused": str(e)})
            continue
        fit_s = time.perf_counter() - start
        clf.set_detector(detector)
        probs, s_in = clf.predict_scores(sets["mnist_test"])
        correct = probs.argmax(1) == test.labels
        scores = {k: clf.predict_scores(v)[1] for k, v in sets.items() if k != "mnist_test"}
        rep = ood.ood_report(detector, s_in, scores["fashion_test"], correct)
        prep = ood.ood_report(detector, s_in, scores["fashion_as_pictures"])
        uci_flags = detector.flag(scores["uci_digits"])
        uci_pred = probs_labels(clf, uci)
        c = costs(clf, sets["mnist_test"], pictures, repeats)
        row = {"detector": name, "threshold": detector.threshold, "info": detector.info, "fit_s": fit_s,
               "auroc": rep["auroc"], "fpr_at_95_tpr": rep["fpr_at_95_tpr"],
               "fashion_flagged": rep["out_flagged"], "mnist_flagged": rep["in_flagged"],
               "accuracy_all": rep["accuracy_all"], "accuracy_accepted": rep["accuracy_accepted"],
               "uci_accepted": float((~uci_flags).double().mean()),
               "uci_accuracy_accepted": float((uci_pred[~uci_flags] == torch.from_numpy(uci_labels)[~uci_flags])
                                              .double().mean()),
               "fashion_as_pictures": {"auroc": prep["auroc"], "fpr_at_95_tpr": prep["fpr_at_95_tpr"],
                                       "flagged": prep["out_flagged"]},
               "seconds": c,
               "cost_batch": c["batch_with_detector_s"] / c["batch_model_s"] - 1,
               "cost_single": c["single_with_detector_s"] / c["single_model_s"] - 1,
               "cost_picture": c["picture_with_detector_s"] / c["picture_model_s"] - 1}
        row["meets_bars"] = meets(row)
        rows.append(row)
        print(f"{name:20s} AUROC {row['auroc']:.4f}  FPR95 {row['fpr_at_95_tpr']:.4f}  fashion flagged "
              f"{row['fashion_flagged']:.4f}  MNIST flagged {row['mnist_flagged']:.4f}  UCI accepted "
              f"{row['uci_accepted']:.4f}  cost {row['cost_batch']:+.1%} batch / {row['cost_single']:+.1%} one / "
              f"{row['cost_picture']:+.1%} picture  {'all bars' if row['meets_bars'] else ''}", flush=True)
    return {"model": str(path), "architecture": clf.meta["model"], "model_config_valid_size": cfg.get("valid_size"),
            "default": ood.DEFAULT, "model_detector": (clf.meta.get(ood.META_KEY) or {}).get("detector"),
            "accept": ood.ACCEPT, "fit_images": ood.FIT_IMAGES, "bars": BARS,
            "sets": {"in": f"MNIST test ({len(test)})", "out": f"Fashion-MNIST test ({len(fash)}, {fashion})",
                     "out_as_pictures": f"Fashion-MNIST test first 2000 through prepare_image ({fash_blank} blank)",
                     "real_handwriting": f"UCI digits ({len(uci)}, {uci_blank} blank)"},
            "detectors": rows}


@torch.no_grad()
def probs_labels(clf: Classifier, inputs: torch.Tensor) -> torch.Tensor:
    """The class each input is predicted as (as the class's value: a digit)."""
    idx = clf.predict_inputs(inputs).argmax(1)
    return torch.tensor([clf.classes[i] for i in idx.tolist()])


def meets(row: dict) -> bool:
    return (row["auroc"] >= BARS["auroc"] and row["fashion_flagged"] >= BARS["fashion_flagged"]
            and row["mnist_flagged"] <= BARS["mnist_flagged"] and row["uci_accepted"] >= BARS["uci_accepted"]
            and max(row["cost_batch"], row["cost_single"]) < BARS["cost"])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SHIPPED), help="a run folder or .safetensors file (default: shipped)")
    ap.add_argument("--fashion", type=Path, default=FASHION, help="folder of the Fashion-MNIST IDX files")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--name", default="ood", help="record name under benchmarks/results/")
    ap.add_argument("--table", action="store_true", help="print the docs' table from the record, measure nothing")
    args = ap.parse_args(argv)
    if args.table:
        rec = json.loads((RESULTS / f"{args.name}.json").read_text())
        print(table(rec, args.name))
        return rec
    rec = measure(args.model, args.fashion, args.repeats)
    print(f"wrote {write_record(args.name, rec)}")
    return rec


if __name__ == "__main__":
    main()
