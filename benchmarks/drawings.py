"""A few hundred varied pictures, as people give them to the page or to `digitlab predict`, for checking that the
page's preparation and predictions (serve/static/prepare.js, ONNX Runtime Web) agree with Python's
(benchmarks/web_page.py, tests/test_web_page.py). Every branch
of the preparation is met: digits drawn with the page's pen, shapes, scribbles and printed letters; hairline and
marker strokes (the stroke evening thickens and thins them); small drawings (scaled up, not down); soft-edged
strokes as a canvas draws them; photos of paper (colour, uneven light, noise, other sizes); light ink on dark;
see-through PNGs; MNIST's own 28x28 images; 8x8 scans; and blank pictures."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from digitlab.data import mnist, nondigits
from digitlab.data.lowres import scan_8x8

SEED = 11  # these pictures check agreement only: nothing is chosen or scored on them


def walk(rng: np.random.Generator, width: int, side: int = 280) -> Image.Image:
    """A smooth stroke of the given pen width on a white canvas (a digit-sized random walk)."""
    img = Image.new("L", (side, side), 255)
    n = int(rng.integers(5, 10))
    pts = np.cumsum(rng.normal(0, 1, (n, 2)), 0)
    pts = (pts - pts.min(0)) / max(1e-6, float(np.ptp(pts, 0).max()))
    pts = pts * rng.uniform(0.4, 0.7) * side + rng.uniform(0.1, 0.3, 2) * side
    ImageDraw.Draw(img).line([tuple(p) for p in pts], fill=0, width=width, joint="curve")
    return img


def photo(drawing: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A drawing as a photo of paper: another size, tinted paper, light falling off across it, noise, ink in
    colour."""
    w, h = int(rng.integers(120, 420)), int(rng.integers(120, 420))
    ink = np.asarray(drawing.resize((w, h), Image.Resampling.BILINEAR), np.float32) / 255  # 1 paper, 0 ink
    light = np.linspace(rng.uniform(0.55, 0.8), 1.0, w)[None, :] * np.linspace(0.85, 1.0, h)[:, None]
    paper = rng.uniform(0.8, 1.0, 3) * 255
    colour = rng.uniform(0, 90, 3)
    rgb = (ink[..., None] * paper + (1 - ink[..., None]) * colour) * light[..., None]
    rgb += rng.normal(0, 6, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def soft(drawing: Image.Image) -> Image.Image:
    """Soft edges, as the browser's canvas anti-aliases a stroke."""
    return drawing.filter(ImageFilter.GaussianBlur(1.2))


def small(drawing: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The drawing shrunk into a corner of the canvas: its crop is scaled up, not down."""
    side = int(rng.integers(40, 90))
    img = Image.new("L", (280, 280), 255)
    img.paste(drawing.resize((side, side), Image.Resampling.BILINEAR), tuple(int(v) for v in rng.integers(0, 280 - side, 2)))
    return img


def see_through(drawing: Image.Image) -> Image.Image:
    """Ink on a transparent sheet: the picture's alpha is its ink."""
    alpha = Image.eval(drawing, lambda v: 255 - v)
    return Image.merge("RGBA", (Image.new("L", drawing.size, 20),) * 3 + (alpha,))


def pictures() -> list[tuple[str, Image.Image]]:
    """(kind, picture) pairs, about 330, the same on every call."""
    rng = np.random.default_rng(SEED)
    test_x = mnist.load_split("valid").images.numpy()  # MNIST's test file
    digits = test_x[rng.permutation(len(test_x))[:200]]
    drawn = nondigits.make("drawn_digits", 200, SEED, digits=digits)
    fonts = nondigits.font_split()["test"]
    out = [("drawn digit", d) for d in drawn[:70]]
    for kind, n in (("closed", 30), ("open", 25), ("scribble", 25), ("letters", 25)):
        out += [(kind, p) for p in nondigits.make(kind, n, SEED, fonts=fonts)]
    out += [("hairline", walk(rng, int(rng.integers(1, 4)))) for _ in range(20)]
    out += [("marker", walk(rng, int(rng.integers(35, 60)))) for _ in range(15)]
    out += [("small", small(d, rng)) for d in drawn[70:90]]
    out += [("soft edges", soft(d)) for d in drawn[90:115]]
    out += [("photo", photo(d, rng)) for d in drawn[115:145]]
    out += [("light on dark", Image.eval(d, lambda v: 255 - v)) for d in drawn[145:155]]
    out += [("see-through", see_through(d)) for d in drawn[155:165]]
    out += [("mnist 28x28", Image.fromarray(x)) for x in digits[165:175]]
    out += [("8x8 scan", Image.fromarray((scan_8x8(x) * 255).round().astype(np.uint8))) for x in digits[175:183]]
    blank = [Image.new("L", (280, 280), 255), Image.new("RGB", (200, 150), (240, 235, 220))]
    dots = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(dots).point([(40, 40), (200, 90)], fill=0)
    noise = Image.fromarray(np.clip(rng.normal(235, 3, (280, 280)), 0, 255).astype(np.uint8))
    out += [("blank", b) for b in blank + [dots, noise]]
    return out
