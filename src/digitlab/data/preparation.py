"""How a picture becomes a model's input: decided once, when the training data is loaded, and saved with the model.

Training, `evaluate`, `predict`, `serve` and the page must see a picture the same way, or a model that scores well
on its own validation images answers nonsense for the very same files. So the data layer says how its images were
read (`TaskData.preparation`), the run stores that in the model file's metadata, and every path that turns a
user's file into an input reads it from there (`prepare`). The kinds:

- handwriting (MNIST and other IDX sets of digits): MNIST's own preparation (images.prepare_image: ink found
  against the paper, cropped, 20x20, centred by mass), which makes a photo or a drawing look like MNIST's digits;
- whole (a known IDX set of objects, e.g. Fashion-MNIST: light objects on black): grey, squashed to 28x28, and
  inverted when the picture's border is light (a photo on white paper), no cropping (images.prepare_whole);
- folder (an image folder data set): exactly as the folder loader read the training images (folders.decode:
  grey, squashed to 28x28, bilinear), with no per-picture inversion; `ink` records the polarity of the training
  images (decided once from them: dark ink on light paper, or light on dark), which the picture must share.

Model files from before this metadata get the old rule (handwriting for digit classes, else whole) and a note.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .folders import squash
from .images import ImageError, as_grey, prepare_image, prepare_whole

HANDWRITING = {"kind": "handwriting"}
WHOLE = {"kind": "whole"}
KINDS = ("handwriting", "whole", "folder")
_noted: set[str] = set()  # model files whose "no preparation in the metadata" note was printed in this process


def for_folder(train_images: torch.Tensor) -> dict:
    """An image folder's preparation, with the polarity of its training images (uint8, N x 28 x 28) judged once
    from all of their borders: light borders mean dark ink on light paper."""
    border = torch.cat([train_images[:, 0], train_images[:, -1], train_images[:, :, 0], train_images[:, :, -1]], 1)
    light = bool(border.float().mean() > 127.5)
    return {"kind": "folder", "ink": "dark_on_light" if light else "light_on_dark"}


def default_for(classes) -> dict:
    """The rule before preparations were saved: digits are handwriting, named classes whole objects."""
    return HANDWRITING if all(isinstance(c, int) for c in classes) else WHOLE


def of_model(meta: dict, where: str = "this model") -> dict:
    """The preparation a model file says it was trained with; for an older file, the old rule and a note (once)."""
    prep = meta.get("preparation")
    if prep is not None:
        if prep.get("kind") not in KINDS:
            raise ImageError(f"{where}: unknown input preparation {prep.get('kind')!r} in its metadata; this digitlab "
                             f"knows {', '.join(KINDS)}. Update digitlab, or retrain the model.")
        return prep
    if where not in _noted:
        _noted.add(where)
        print(f"note: {where} predates saved input preparations; its pictures are prepared by the old rule "
              f"(handwriting for digits, whole objects otherwise). Retrain it to save how its training images "
              f"were read.", file=sys.stderr)
    return default_for(meta["classes"])


def prepare(prep: dict, source: str | Path | bytes | Image.Image | np.ndarray) -> torch.Tensor:
    """One picture as the model's input: float (28, 28) in [0, 1], the way `prep` says its training images were."""
    kind = prep["kind"]
    if kind == "handwriting":
        return prepare_image(source)
    if kind == "whole":
        return prepare_whole(source)
    return torch.from_numpy(read_like_folder(source).astype(np.float32) / 255.0)


def read_like_folder(source: str | Path | bytes | Image.Image | np.ndarray) -> np.ndarray:
    """A picture read as the folder loader read the training images (folders.squash), uint8 (28, 28)."""
    if isinstance(source, np.ndarray):
        return squash(Image.fromarray(np.clip(as_grey(source) * 255.0 + 0.5, 0, 255).astype(np.uint8)))
    if isinstance(source, Image.Image):
        return squash(source)
    name = "the image" if isinstance(source, bytes) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            im.load()
            return squash(im)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ImageError(f"{name}: not a readable image ({e}). Give a PNG, JPEG, WebP, BMP or GIF file.") from None
