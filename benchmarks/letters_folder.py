"""Claim checked (issue 30): train and predict see the same picture for an image folder of printed letters.

The case a user met: a folder of printed letters A to J, dark ink on light paper, train/ and valid/ split by font,
trained with plain `digitlab train --data DIR --epochs 5`; then `digitlab predict RUN DIR/valid` answered a wrong
letter for every C. Here the folder is made from the fonts this machine has (data.nondigits.text_fonts: Debian's
DejaVu and Liberation, else matplotlib's own), every third font held out for valid/, and the bar is that `predict`
on the run's own valid/ files gets exactly as many right as the run reported, and flags no more of them than the
detector flags of the images its threshold was set on (give or take two binomial standard errors of that rate).
A control runs the same model file without its saved preparation: the old rule the user met.

    python -m benchmarks.letters_folder [--epochs 5] [--per-font 20]

Record: results/letters-folder.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitlab.data.nondigits import text_fonts
from digitlab.hardware import machine_class
from digitlab.weights import load_model_and_extras, read_weights, save_model

from .common import write_record

DIGITLAB = str(Path(sys.executable).with_name("digitlab"))
LETTERS = "ABCDEFGHIJ"


def letter(font: Path, ch: str, rng: np.random.Generator) -> Image.Image:
    """One printed letter on a 64x64 sheet: light paper, dark ink, size, place and slant varied a little."""
    paper, ink = int(rng.integers(200, 256)), int(rng.integers(0, 70))
    img = Image.new("L", (64, 64), paper)
    face = ImageFont.truetype(str(font), int(rng.integers(36, 52)))
    d = ImageDraw.Draw(img)
    x, y = 32 + rng.uniform(-5, 5), 32 + rng.uniform(-5, 5)
    d.text((x, y), ch, fill=ink, font=face, anchor="mm")
    return img.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BILINEAR, fillcolor=paper)


def make_folder(root: Path, per_font: int, seed: int = 0) -> dict:
    """root/train/<letter>/ and root/valid/<letter>/, every third font (by name) in valid/."""
    rng, faces = np.random.default_rng(seed), text_fonts()
    split = {f: "valid" if i % 3 == 2 else "train" for i, f in enumerate(faces)}
    for f, part in split.items():
        for ch in LETTERS:
            (root / part / ch).mkdir(parents=True, exist_ok=True)
            for k in range(per_font):
                letter(f, ch, rng).save(root / part / ch / f"{f.stem}-{k}.png")
    return {part: sorted(f.name for f, p in split.items() if p == part) for part in ("train", "valid")}


def run(*args) -> str:
    proc = subprocess.run([DIGITLAB, *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"digitlab {' '.join(map(str, args))} failed: {proc.stderr[-2000:]}")
    return proc.stdout


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--per-font", type=int, default=20, help="pictures of each letter per font")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "letters"
        split = make_folder(root, args.per_font)
        summary = json.loads(run("train", "--data", root, "--epochs", args.epochs, "--runs", tmp, "--name", "run",
                                 "--json"))
        answers = json.loads(run("predict", Path(tmp) / "run", root / "valid", "--json"))
        meta = read_weights(Path(tmp) / "run" / "model.safetensors")[1]
        # the control: the same model file without its saved preparation gets the rule from before (whole objects,
        # inverted when the border is light), the one the user met
        model, _, extras = load_model_and_extras(Path(tmp) / "run" / "model.safetensors")
        old = save_model(model, Path(tmp) / "old-rule.safetensors",
                         {k: v for k, v in meta.items() if k != "preparation"}, extra=extras)
        old_answers = json.loads(run("predict", old, root / "valid", "--json"))
    right = [a["label"] == Path(a["image"]).parent.name for a in answers]
    flagged = sum(a["none_of_the_classes"] for a in answers)
    by_letter = {ch: sum(r for r, a in zip(right, answers) if Path(a["image"]).parent.name == ch) for ch in LETTERS}
    detector = meta.get("ood") or {}
    valid_flag_rate = 1 - detector.get("accept", 0.99)
    # the threshold is a quantile of n_threshold images: the share it flags of new images of the same kind is that
    # rate give or take two binomial standard errors (with 500 images: 1% +- 0.9%)
    slack = 2 * (valid_flag_rate * (1 - valid_flag_rate) / detector.get("n_threshold", 1)) ** 0.5
    record = {
        "claim": "predict on a letters folder's own valid/ images agrees with the run's score to the image",
        "command": f"digitlab train --data DIR --epochs {args.epochs}; digitlab predict RUN DIR/valid --json",
        "fonts": split, "n_valid": len(answers), "preparation": meta.get("preparation"),
        "run_accuracy": summary["accuracy"], "run_errors": summary["errors"],
        "predict_right": sum(right), "predict_errors": len(right) - sum(right), "right_by_letter": by_letter,
        "flagged": flagged, "flagged_share": flagged / len(answers), "detector": detector,
        "detector_flag_rate_on_its_threshold_images": valid_flag_rate,
        "old_rule": {"accuracy": sum(a["label"] == Path(a["image"]).parent.name for a in old_answers) / len(old_answers),
                     "flagged_share": sum(a["none_of_the_classes"] for a in old_answers) / len(old_answers)},
        "bar_same_errors": len(right) - sum(right) == summary["errors"],
        "flag_rate_slack": slack, "bar_flags_within_rate": flagged / len(answers) <= valid_flag_rate + slack,
        "machine_class": machine_class(json.loads(run("info", "--json"))),
    }
    print(f"run: {summary['accuracy']:.4f} ({summary['errors']} errors of {len(answers)}); predict: "
          f"{sum(right) / len(right):.4f} ({record['predict_errors']} errors); flagged {flagged} "
          f"({record['flagged_share']:.2%}, detector's rate {valid_flag_rate:.2%} +- {slack:.2%}); bars: same errors "
          f"{record['bar_same_errors']}, flags within the rate {record['bar_flags_within_rate']}")
    print(f"control, the model file without its preparation (the old rule): {record['old_rule']['accuracy']:.4f} "
          f"right, {record['old_rule']['flagged_share']:.2%} flagged")
    print(write_record("letters-folder", record))


if __name__ == "__main__":
    main()
