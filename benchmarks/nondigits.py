"""Claim checked (issue 27): what `digitlab predict` answers for pictures people really give it, per kind.

Every set is written as PNG files and given to `digitlab predict MODEL DIR --json` in a fresh process, as a user
does, so each figure goes through predict's own preparation: drawn shapes, open strokes and scribbles made with
the page's pen, printed letters in the test group of fonts (data.nondigits, the test seed: no picture or font
shared with what a detector may be trained or chosen on), Fashion-MNIST's test images, and, to see what is
wrongly flagged, MNIST's test digits, digits drawn the page's way and the UCI digits (8x8 scans).

    python -m benchmarks.nondigits [--model FILE_OR_RUN] [--n 2000] [--drawn 8000] [--name shipped]

Record: results/nondigits-<name>.json: per set, the share flagged "not a digit" and, for digits, the accuracy;
and the AUROC and FPR at 95% TPR of predict's detector score (`ood_score`) against MNIST's test digits.
Issue 27's bars: shapes, scribbles and letters at least 95% flagged (letters in unseen fonts at least 90%),
Fashion-MNIST at least 95%; MNIST test at most 1% flagged, drawn digits at least 98% right and not flagged, UCI
digits at least 97% accepted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from digitlab.data import nondigits
from digitlab.data.tasks import load_task
from digitlab.data.uci import uci_digits
from digitlab.hardware import machine_class
from digitlab.ood import auroc, fpr_at_tpr

from .common import write_record

DIGITLAB = str(Path(sys.executable).with_name("digitlab"))
SHIPPED = Path(__file__).resolve().parent.parent / "src" / "digitlab" / "pretrained" / "digits-cnn.safetensors"
FASHION = Path("/usr/share/datasets/fashion-mnist")
DRAWN_FROM = 2000   # the MNIST test digits drawn the page's way begin here: the first 2,000 were drawn for the
                    # fourth design's test (seed 9), whose drawn-digit figure prompted the fifth's threshold
BARS = {"closed": ("flagged", 0.95), "open": ("flagged", 0.95), "scribble": ("flagged", 0.95),
        "letters": ("flagged", 0.90), "fashion_test": ("flagged", 0.95), "mnist_test": ("flagged_at_most", 0.01),
        "drawn_digits": ("right_and_accepted", 0.98), "uci_digits": ("accepted", 0.97)}


def sets(n: int, n_drawn: int) -> dict[str, tuple[list[Image.Image], np.ndarray | None]]:
    """name -> (pictures, digit labels or None)."""
    mnist = load_task("digits").test
    images, labels = mnist.images.numpy(), mnist.labels.numpy()
    fonts = nondigits.font_split()["test"]
    out = {kind: (nondigits.make(kind, n, nondigits.TEST_SEED, fonts), None)
           for kind in ("closed", "open", "scribble", "letters")}
    drawn = slice(DRAWN_FROM, DRAWN_FROM + n_drawn)
    out["drawn_digits"] = (nondigits.make("drawn_digits", n_drawn, nondigits.TEST_SEED, digits=images[drawn]),
                           labels[drawn])
    out["mnist_test"] = ([Image.fromarray(x) for x in images], labels)
    uci, uci_labels = uci_digits()
    out["uci_digits"] = ([Image.fromarray((x * 255).round().astype(np.uint8)) for x in uci], uci_labels)
    if FASHION.is_dir():
        fashion = load_task("digits", FASHION).test.images.numpy()
        out["fashion_test"] = ([Image.fromarray(x) for x in fashion], None)
    return out


def predict(model: str, pictures: list[Image.Image], folder: Path) -> list[dict]:
    folder.mkdir(parents=True)
    for i, im in enumerate(pictures):
        im.save(folder / f"{i:05d}.png")
    proc = subprocess.run([DIGITLAB, "predict", model, str(folder), "--json"], capture_output=True, text=True)
    if proc.returncode not in (0, 2):  # 2: some picture was blank, still an answer for each
        raise SystemExit(f"digitlab predict failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def separation(digits: list[dict], others: list[dict]) -> dict:
    """AUROC and FPR at 95% TPR of the detector's scores (predict's `ood_score`), MNIST's test digits against a
    set; pictures answered blank have no score and are left out."""
    def scores(answers):
        return torch.tensor([a["ood_score"] for a in answers if a.get("ood_score") is not None])
    inside, outside = scores(digits), scores(others)
    if not len(inside) or not len(outside):
        return {}
    return {"auroc": auroc(inside, outside), "fpr_at_95_tpr": fpr_at_tpr(inside, outside)}


def summarise(answers: list[dict], labels: np.ndarray | None) -> dict:
    flagged = np.array([bool(a.get("none_of_the_classes")) for a in answers])
    blank = np.array([bool(a.get("blank")) for a in answers])
    row = {"n": len(answers), "flagged": float(flagged.mean()), "blank": int(blank.sum()),
           "flagged_or_blank": float((flagged | blank).mean()), "accepted": float((~flagged & ~blank).mean())}
    if labels is not None:
        right = np.array([a.get("label") == int(y) for a, y in zip(answers, labels)])
        row.update(accuracy=float(right.mean()), right_and_accepted=float((right & ~flagged & ~blank).mean()))
    return row


def bar_met(name: str, row: dict) -> bool | None:
    if name not in BARS:
        return None
    kind, value = BARS[name]
    if kind == "flagged":  # a blank answer is also "not a digit" to a user
        return row["flagged_or_blank"] >= value
    if kind == "flagged_at_most":
        return row["flagged"] <= value
    return row[kind] >= value


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SHIPPED))
    ap.add_argument("--n", type=int, default=2000, help="pictures of each made kind (2,000: a share near 95% to "
                    "about half a point; the third design's 300 measured it to 1.4)")
    ap.add_argument("--drawn", type=int, default=8000, help="MNIST test digits drawn the page's way, from DRAWN_FROM")
    ap.add_argument("--name", default="shipped")
    args = ap.parse_args(argv)
    rows, answers = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (pictures, labels) in sets(args.n, args.drawn).items():
            answers[name] = predict(args.model, pictures, Path(tmp) / name)
            rows[name] = {**summarise(answers[name], labels)}
            rows[name]["bar_met"] = bar_met(name, rows[name])
            print(name, rows[name], flush=True)
    for name in rows:
        if name != "mnist_test":  # how well the scores tell MNIST's test digits from each set
            rows[name].update(separation(answers["mnist_test"], answers[name]))
    info = json.loads(subprocess.run([DIGITLAB, "info", "--json"], capture_output=True, text=True).stdout)
    record = {"claim": "predict's answers per kind of picture (issue 27's bars)", "model": args.model, "n": args.n,
              "seed": nondigits.TEST_SEED, "drawn_from": DRAWN_FROM,
              "fonts": [f.name for f in nondigits.font_split()["test"]],
              "bars": {k: list(v) for k, v in BARS.items()}, "rows": rows, "machine_class": machine_class(info)}
    print(write_record(f"nondigits-{args.name}", record))


if __name__ == "__main__":
    main()
