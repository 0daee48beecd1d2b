"""A user's own images, made to look like MNIST, and the predictions of a saved model on them.

MNIST digits are white ink on black, the ink's bounding box scaled to fit 20x20 keeping its aspect, and placed in
a 28x28 field so that its centre of mass is at the centre. `prepare_image` does the same to any picture: grey,
inverted when the paper is light, cropped to the ink, scaled, and centred by mass. One implementation serves
`digitlab predict` and the web app.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DigitlabError

MAX_PIXELS = 40_000_000  # larger images are refused before decoding (decompression bombs)
INK_THRESHOLD = 0.2      # a pixel is ink when it is this far from the paper, relative to the darkest ink
MIN_CONTRAST = 0.15      # below this difference between paper and ink (0..1), the image is blank


class ImageError(DigitlabError, ValueError):
    """The input is not a readable image (or is too large to decode safely)."""


class BlankImageError(DigitlabError, ValueError):
    """The image holds no digit: no ink stands out from the paper."""


def open_image(source: str | Path | bytes | Image.Image) -> Image.Image:
    """Decode a PNG, JPEG, WebP, ... from a path or bytes, refusing decompression bombs and corrupt files."""
    if isinstance(source, Image.Image):
        return source
    name = "image" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        im = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        if im.width * im.height > MAX_PIXELS:
            raise ImageError(f"{name}: {im.width}x{im.height} pixels is more than the {MAX_PIXELS} allowed; "
                             f"scale it down first.")
        im.load()
        return im
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"{name}: not a readable image ({e.__class__.__name__}: {e}). Use a PNG, JPEG or WebP "
                         f"file.") from None


def to_grey(im: Image.Image) -> np.ndarray:
    """Grey levels in [0, 1]; transparent parts count as paper (white), as on a page."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def ink_map(grey: np.ndarray) -> np.ndarray:
    """Ink strength in [0, 1], bright on dark: inverted when the paper (the border's median) is light."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    paper = float(np.median(border))
    ink = (paper - grey) if paper > 0.5 else (grey - paper)
    strongest = float(ink.max()) if ink.size else 0.0
    if strongest < MIN_CONTRAST:
        raise BlankImageError("no digit found: the image is blank (no ink stands out from the background). "
                              "Draw or photograph a digit with clear contrast.")
    ink = np.clip(ink / strongest, 0, 1)
    ink[ink < INK_THRESHOLD] = 0  # paper texture, shadows and JPEG noise
    return ink


def centre_by_mass(box: np.ndarray) -> np.ndarray:
    """Place a digit of at most 20x20 in 28x28 so that its centre of mass lands at the centre (14, 14)."""
    out = np.zeros((28, 28), np.float32)
    h, w = box.shape
    total = box.sum()
    cy, cx = ((np.arange(h) @ box.sum(1)) / total, (np.arange(w) @ box.sum(0)) / total) if total > 0 else (h / 2, w / 2)
    top = int(np.clip(round(14 - cy), 0, 28 - h))
    left = int(np.clip(round(14 - cx), 0, 28 - w))
    out[top:top + h, left:left + w] = box
    return out


def prepare_image(source: str | Path | bytes | Image.Image | np.ndarray) -> torch.Tensor:
    """Any image of a digit -> float (28, 28) in [0, 1] that looks like an MNIST digit."""
    grey = source.astype(np.float32) / (255.0 if source.max() > 1 else 1.0) if isinstance(source, np.ndarray) \
        else to_grey(open_image(source))
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise ImageError(f"expected a 2-D grey image, got an array of shape {grey.shape}.")
    ink = ink_map(grey)
    rows, cols = np.nonzero(ink)
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR
    small = np.asarray(Image.fromarray(crop).resize(size, resample), dtype=np.float32)
    return torch.from_numpy(centre_by_mass(np.clip(small, 0, 1)))


@dataclass
class Prediction:
    label: int                 # the digit
    probs: dict[int, float]    # digit -> probability
    input: torch.Tensor        # the 28x28 image the model saw

    def to_dict(self) -> dict:
        return {"label": self.label, "probabilities": {str(k): round(v, 6) for k, v in self.probs.items()}}


class Classifier:
    """A saved model ready to predict: `Classifier.load(run_or_file).predict([image, ...])`."""

    def __init__(self, model: torch.nn.Module, meta: dict):
        self.model, self.meta, self.classes = model.eval(), meta, list(meta["classes"])

    @classmethod
    def load(cls, run_or_file: str | Path) -> "Classifier":
        from .runs import resolve_model_file
        from .weights import load_model

        return cls(*load_model(resolve_model_file(run_or_file)))

    @torch.inference_mode()
    def predict_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Probabilities (N, C) for prepared inputs (N, 28, 28) in [0, 1]."""
        from .train.losses import softmax

        device = next(self.model.parameters()).device
        return softmax(self.model(inputs.unsqueeze(1).to(device)).float()).cpu()

    def predict(self, sources: list) -> list[Prediction]:
        """Prepare each image and predict them in one batch. Raises ImageError/BlankImageError per bad image."""
        inputs = torch.stack([prepare_image(s) for s in sources])
        return [Prediction(self.classes[int(p.argmax())], dict(zip(self.classes, p.tolist())), x)
                for p, x in zip(self.predict_inputs(inputs), inputs)]
