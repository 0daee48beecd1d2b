"""`digitlab predict` on 1000 image files: under 5 seconds on 2 CPU cores, against a naive baseline.

The files: 1000 MNIST test digits (the model never trained on them) rendered as a user's pictures would be:
scaled to 60 to 300 pixels on larger canvases at random places, dark ink on coloured paper or the reverse,
uneven light, noise, thick or thin strokes, saved as PNG or JPEG. Ours: `Classifier.predict_many` (every image
prepared, then one batched model call), and the real `digitlab predict RUN FOLDER --json` process end to end
(start-up and model loading included). Baseline: one model call per image, the way a simple loop does it.
Also recorded: the accuracy on these renderings, against the labels and against the model's own predictions
on the original 28x28 images.

Each of the three is timed --repeats times, interleaved, after a warm-up; the record holds every run and the
medians.

Run: python -m benchmarks.predict_speed --run runs/<a digits run> [--n 1000] [--repeats 3]
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
from PIL import Image, ImageFilter

from digitlab.data.mnist import load_split
from digitlab.predict import Classifier

from .common import median, timed, write_record

STYLES = ("dark_on_light", "light_on_dark", "thick", "thin", "uneven_light", "noisy_jpeg")


def render(img: np.ndarray, rng: np.random.Generator, style: str) -> Image.Image:
    """One 28x28 uint8 MNIST digit as a picture of `style`: bigger, placed anywhere, on paper of some colour."""
    side = int(rng.integers(60, 300))
    ink = Image.fromarray(img).resize((side, side), Image.Resampling.BILINEAR)
    if style == "thick":
        ink = ink.filter(ImageFilter.MaxFilter(2 * (side // 40) + 1))
    elif style == "thin":
        ink = ink.point(lambda v: 255 if v > 128 else 0).filter(ImageFilter.MinFilter(2 * (side // 80) + 1))
    w, h = side + int(rng.integers(10, side)), side + int(rng.integers(10, side))
    canvas = np.zeros((h, w), np.float32)
    top, left = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
    canvas[top:top + side, left:left + side] = np.asarray(ink, np.float32) / 255
    paper = rng.uniform(0.75, 1.0, 3) if style != "light_on_dark" else rng.uniform(0.0, 0.25, 3)
    pen = rng.uniform(0.0, 0.3, 3) if style != "light_on_dark" else rng.uniform(0.8, 1.0, 3)
    rgb = paper + canvas[..., None] * (pen - paper)
    if style == "uneven_light":  # a shadow across the page
        rgb *= np.linspace(rng.uniform(0.45, 0.7), 1.0, w, dtype=np.float32)[None, :, None]
    if style == "noisy_jpeg":
        rgb += rng.normal(0, 0.05, rgb.shape)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def write_images(folder: Path, n: int, seed: int = 0) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """n rendered test digits as files (every sixth a JPEG), their labels, and the original 28x28 images."""
    split = load_split("valid")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(split), n, replace=False)
    images, labels = split.images[idx].numpy(), split.labels[idx].numpy()
    paths = []
    for i, img in enumerate(images):
        style = STYLES[i % len(STYLES)]
        path = folder / f"{i:04d}_{style}.{'jpg' if style == 'noisy_jpeg' else 'png'}"
        render(img, rng, style).save(path, quality=85) if path.suffix == ".jpg" else render(img, rng, style).save(path)
        paths.append(path)
    return paths, labels, images


def naive(clf, paths: list[Path]) -> list[int]:
    """The baseline: one model call per image."""
    return [o.prediction.label if o.prediction else -1 for p in paths for o in clf.predict_many([p])]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run folder (or .safetensors) of a digits model")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="also keep the rendered images in this folder")
    args = ap.parse_args(argv)

    clf = Classifier.load(args.run)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        paths, labels, originals = write_images(folder, args.n)
        clf.predict_many(paths[:20])  # warm-up: imports, allocator, page cache
        cli = [str(Path(sys.executable).parent / "digitlab"), "predict", str(args.run), str(folder), "--json"]
        runs = {"predict_many": [], "naive_per_image": [], "cli_end_to_end": []}
        for _ in range(args.repeats):  # interleaved, so all three see the same machine noise
            t, outcomes = timed(clf.predict_many, paths)
            runs["predict_many"].append(t)
            t, baseline_labels = timed(naive, clf, paths)
            runs["naive_per_image"].append(t)
            t, proc = timed(subprocess.run, cli, capture_output=True, text=True)
            runs["cli_end_to_end"].append(t)
            if proc.returncode != 0:
                raise SystemExit(f"digitlab predict failed: {proc.stderr}")
        cli_labels = [r["label"] for r in json.loads(proc.stdout)]
    ours, baseline, cli_seconds = (median(runs[k]) for k in ("predict_many", "naive_per_image", "cli_end_to_end"))
    preds = np.array([o.prediction.label if o.prediction else -1 for o in outcomes])
    on_originals = np.array([p.label for p in clf.predictions(torch.from_numpy(originals).float() / 255)])
    by_style = {s: float((preds[i::len(STYLES)] == labels[i::len(STYLES)]).mean()) for i, s in enumerate(STYLES)}
    record = {
        "claim": f"digitlab predict on {args.n} image files (PNG and JPEG, 60 to 600 pixels a side) in under 5 s "
                 f"on 2 CPU cores",
        "run": str(args.run), "model": clf.meta.get("model"), "n": args.n,
        "repeats": args.repeats, "runs": {k: [round(t, 3) for t in v] for k, v in runs.items()},
        "seconds": {"predict_many": round(ours, 3), "naive_per_image": round(baseline, 3),
                    "cli_end_to_end": round(cli_seconds, 3)},
        "speedup_vs_naive": round(baseline / ours, 2),
        "same_labels_as_naive": float(np.mean(preds == np.array(baseline_labels))),
        "cli_same_labels": float(np.mean(preds == np.array([-1 if v is None else v for v in cli_labels]))),
        "accuracy_on_renderings": float((preds == labels).mean()),
        "accuracy_on_originals": float((on_originals == labels).mean()),
        "agreement_with_originals": float((preds == on_originals).mean()),
        "accuracy_by_style": by_style,
    }
    print(json.dumps(record, indent=2))
    print(f"wrote {write_record('predict_speed', record)}")
    return record


if __name__ == "__main__":
    main()
