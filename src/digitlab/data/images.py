"""A user's own images made to look like MNIST digits, and the image-file helpers around them.

MNIST digits are white ink on black, the ink's bounding box scaled to fit 20x20 keeping its aspect, and placed in
a 28x28 field so that its centre of mass is at the centre. `prepare_image` does the same to any picture: grey,
inverted when the paper is light, cropped to the ink, scaled, and centred by mass. One implementation serves
`digitlab predict`, the web app and `digitlab evaluate --uci-digits`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageFilter, ImageOps, UnidentifiedImageError

from ..errors import DigitlabError

MAX_PIXELS = 40_000_000  # larger images are refused before decoding (decompression bombs)
WORK_SIDE = 160          # larger images are reduced to this long side first: enough detail, bounded time
INK_THRESHOLD = 0.25     # a pixel is ink when it is this far from the paper, relative to the strongest ink
MIN_CONTRAST = 0.15      # below this difference between paper and ink (0..1), the image is blank
MIN_INK_PIXELS = 4       # fewer ink pixels than this (after removing specks) is no digit
STROKE_SIDE = 80         # the cropped digit is brought to this long side to even out its stroke width
MNIST_STROKE = 1.84      # median stroke width of MNIST digits in their 20-pixel box (2*area/perimeter, measured)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")  # what a folder's images are


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
        if im.format == "JPEG" and max(im.size) > 2 * WORK_SIDE:
            im.draft("L", (WORK_SIDE, WORK_SIDE))  # decode big JPEGs at a reduced size: much faster
        im.load()
        return im
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file. Check the path (`ls` it).") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a folder; give image files, or the folder's images as {name}/*.png.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"{name}: not a readable image ({e.__class__.__name__}: {e}). Use a PNG, JPEG or WebP "
                         f"file.") from None


def to_grey(im: Image.Image) -> np.ndarray:
    """Grey levels in [0, 1], reduced to at most WORK_SIDE; transparent parts count as paper (white), as on a page."""
    im.load()  # a PNG's EXIF may follow its pixels
    if im.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # exif_transpose copies even when there is nothing to do
        im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im if im.mode == "RGBA" else im.convert("RGBA")
        # over white, an opaque pixel stays itself to the bit (tests/test_images.py checks every value): a fully
        # opaque image, such as the page's canvas, skips the composite (0.5 ms at 280x280)
        if im.getchannel("A").getextrema()[0] < 255:
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, im)
    im = im.convert("L")
    if max(im.size) > WORK_SIDE:
        f = WORK_SIDE / max(im.size)
        im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.Resampling.BOX)
    return np.asarray(im, dtype=np.float32) / 255.0


def block_levels(grey: np.ndarray, q: float, blocks: int = 4, percentile=np.percentile) -> np.ndarray:
    """The paper's level in a coarse grid of blocks (q-th percentile of each), spread back over the image.

    Photographs are lit unevenly: the paper in one corner can be darker than the ink in another. A 3x3 median
    over the grid lets a block filled by a thick stroke take its neighbours' paper level, and keeps a gradient.
    `percentile`: np.percentile, or `exact_percentile` (the same numbers; 0.3 ms less on a 160x160 image)."""
    h, w = grey.shape
    bh, bw = h // blocks, w // blocks  # the last few rows and columns are left out of the grid
    cells = grey[:bh * blocks, :bw * blocks].reshape(blocks, bh, blocks, bw).transpose(0, 2, 1, 3)
    grid = percentile(cells.reshape(blocks, blocks, -1), q, axis=2).astype(np.float32)  # one call: fast
    pad = np.pad(grid, 1, mode="edge")
    stack = np.stack([pad[i:i + blocks, j:j + blocks] for i in range(3) for j in range(3)])
    # the middle of 9 sorted values is np.median's answer to the bit, without its 15 us (NaN: np.median's own)
    grid = np.median(stack, 0).astype(np.float32) if np.isnan(grid).any() else np.sort(stack, 0)[4]
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def exact_percentile(a: np.ndarray, q, axis: int | None = None):
    """np.percentile(a, q, axis) (its default 'linear' method) to the bit, from one np.partition: np.percentile
    spends ~35 us of Python a call (most of preparing a 28x28 image), and along an axis partitions a strided copy
    (0.3 ms for the 4x4 blocks of a 160x160 image). Floats, over all values or the last axis; NaN: numpy's own."""
    weak = type(q) in (int, float)  # a plain number: numpy computes in the array's dtype ("weak" q)
    n = a.size if axis is None else a.shape[axis]
    if n == 0 or a.dtype.kind != "f" or (axis is not None and (not weak or axis not in (-1, a.ndim - 1))):
        return np.percentile(a, q, axis=axis)
    where = [_indexes(n, q)] if weak else [_indexes(n, v) for v in q]
    kth = sorted({k for i, j, _ in where for k in (i, j)} | {n - 1})  # n - 1: the largest value, or a NaN
    s = np.partition(a, kth, axis=-1 if axis is not None else None)  # a copy (flattened when axis is None)
    if np.isnan(s[..., -1]).any():
        return np.percentile(a, q, axis=axis)
    if weak:
        i, j, t = where[0]
        return _lerp(s[..., i], s[..., j], t, weak=True)
    return np.array([_lerp(s[i], s[j], t, weak=False) for i, j, t in where])


def sorted_percentile(a: np.ndarray, q):
    """np.percentile(a, q) to the bit: `exact_percentile` under its earlier name."""
    return exact_percentile(a, q)


def _indexes(n: int, q: float) -> tuple[int, int, float]:
    """numpy's _quantile for one q over n sorted values, step for step: the two indexes and the weight."""
    v = (n - 1) * (q / 100)
    top = v >= n - 1
    i = n - 1 if top else int(v)
    j = i if top else i + 1
    t = v + 1 if top else v - i  # at the top numpy weighs against index -1 (harmless: a == b there)
    return i, j, t


def _lerp(a, b, t: float, weak: bool):
    """numpy's _lerp for one weight t between values (or arrays of them) a and b: the same operations, rounding."""
    d = b - a  # float32, as numpy's diff_b_a
    if weak:  # float32 arithmetic throughout (NEP 50)
        return b - d * (1 - t) if t >= 0.5 else a + d * t
    a, b, d = float(a), float(b), float(d)  # a float64 weight array makes the rest float64
    return b - d * (1 - t) if t >= 0.5 else a + d * t


def ink_map(grey: np.ndarray, percentile=np.percentile) -> np.ndarray:
    """Ink strength in [0, 1], bright on dark: inverted when the paper is light, evened out under uneven light."""
    lo, paper, hi = percentile(grey[::2, ::2], [1, 50, 99])  # every fourth pixel is plenty
    light_paper = (hi - paper) < (paper - lo) or (hi - lo < 1e-6 and paper > 0.5)  # most pixels are paper
    if min(grey.shape) >= 48:
        background = block_levels(grey, 90 if light_paper else 10, percentile=percentile)
    else:
        background = np.full_like(grey, percentile(grey, 90 if light_paper else 10))
    ink = (background - grey) if light_paper else (grey - background)
    strongest = float(percentile(ink, 99.9)) if ink.size else 0.0
    if strongest < MIN_CONTRAST:
        raise BlankImageError("no digit found: the image is blank (no ink stands out from the background). "
                              "Draw or photograph a digit with clear contrast.")
    ink = np.clip(ink / strongest, 0, 1)
    ink[ink < INK_THRESHOLD] = 0  # paper texture, shadows and JPEG noise
    return remove_specks(ink)


def remove_specks(ink: np.ndarray) -> np.ndarray:
    """Drop ink pixels with fewer than two ink neighbours (salt noise, dust); strokes, even 1 pixel wide, stay."""
    h, w = ink.shape
    pad = np.zeros((h + 2, w + 2), np.int8)  # np.pad costs more than this whole function on a 28x28 image
    on = pad[1:-1, 1:-1]
    np.greater(ink, 0, out=on)
    rows = pad[:-2] + pad[1:-1] + pad[2:]  # 3x3 box sums, separably: 5 array operations instead of 9
    keep = (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:] - on) >= 2
    if keep.sum() < MIN_INK_PIXELS:
        raise BlankImageError("no digit found: only a few scattered dots stand out from the background. "
                              "Draw or photograph a digit with clear contrast.")
    return np.where(keep, ink, 0).astype(np.float32)


def ink_box(ink: np.ndarray, trim: float = 0.003) -> tuple[slice, slice]:
    """The rows and columns holding all but `trim` of the ink's mass at each end (stray marks far away are cut)."""
    def span(mass: np.ndarray) -> slice:
        total = mass.sum()
        if total <= 0:
            raise BlankImageError("no digit found: no ink is left once the background is removed.")
        c = np.cumsum(mass) / total
        return slice(int(np.searchsorted(c, trim)), int(np.searchsorted(c, 1 - trim)) + 1)
    return span(ink.sum(1)), span(ink.sum(0))


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary drawing: 2 * area / perimeter (a stroke of length L and width w: 2Lw / 2L)."""
    m = mask.astype(np.int8)
    perimeter = np.abs(np.diff(np.pad(m, 1), axis=0)).sum() + np.abs(np.diff(np.pad(m, 1), axis=1)).sum()
    return 2 * float(m.sum()) / max(float(perimeter), 1.0)


def even_strokes(crop: np.ndarray) -> np.ndarray:
    """Bring the digit to STROKE_SIDE and thicken hairlines (a mouse) or thin marker strokes to MNIST's width.

    Only big drawings are evened: a small image (8x8 scans, MNIST itself) is just scaled up, smoothly."""
    h, w = crop.shape
    f = STROKE_SIDE / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    if f >= 1:
        return np.clip(np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BICUBIC), np.float32), 0, 1)
    arr = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BOX), dtype=np.float32)
    arr = arr / max(float(arr.max()), 1e-6)
    target = MNIST_STROKE * STROKE_SIDE / 20
    width = stroke_width(arr > 0.5)
    if width < 0.6 * target:
        arr = np.clip(arr / max(float(np.median(arr[arr > 0])), 1e-6), 0, 1)  # hairlines fade when scaled down
        width = stroke_width(arr > 0.5)
        k = int(round(target - width)) | 1  # odd size: a max filter of size k adds k - 1 to the width
        arr = np.asarray(Image.fromarray(arr).filter(ImageFilter.MaxFilter(min(k, 15))), dtype=np.float32)
    elif width > 1.8 * target:
        k = int(round((width - target) / 2)) | 1
        thinned = np.asarray(Image.fromarray(arr).filter(ImageFilter.MinFilter(min(k, 15))), dtype=np.float32)
        if (thinned > 0.5).sum() > 0.25 * (arr > 0.5).sum():  # keep the digit if thinning would erase it
            arr = thinned
    return arr


def centre_by_mass(box: np.ndarray) -> np.ndarray:
    """Place a digit of at most 20x20 in 28x28 so that its centre of mass lands at the centre (14, 14)."""
    out = np.zeros((28, 28), np.float32)
    h, w = box.shape
    total = box.sum()
    cy, cx = ((np.arange(h) @ box.sum(1)) / total, (np.arange(w) @ box.sum(0)) / total) if total > 0 else (h / 2, w / 2)
    top = min(max(round(14 - cy), 0), 28 - h)  # np.clip on one number costs ~5 us
    left = min(max(round(14 - cx), 0), 28 - w)
    out[top:top + h, left:left + w] = box
    return out


def as_grey(source: str | Path | bytes | Image.Image | np.ndarray) -> np.ndarray:
    """Grey levels in [0, 1] from a file, bytes, a PIL image or an array (uint8 0..255, or floats in [0, 1])."""
    if not isinstance(source, np.ndarray):
        return to_grey(open_image(source))
    grey = source.astype(np.float32)
    if grey.ndim == 3 and grey.shape[-1] in (3, 4):
        grey = grey[..., :3].mean(-1)
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise ImageError(f"expected a 2-D grey image, got an array of shape {source.shape}.")
    return grey / 255.0 if source.dtype == np.uint8 or grey.max() > 1 else grey


def prepare_image(source: str | Path | bytes | Image.Image | np.ndarray) -> torch.Tensor:
    """Any image of a digit -> float (28, 28) in [0, 1] that looks like an MNIST digit.

    Grey; ink found against the paper (inverted when the paper is light, evened out under uneven light); specks
    removed; cropped to the ink; strokes brought to MNIST's width; scaled to fit 20x20 keeping the aspect;
    centred by its centre of mass in 28x28. Raises BlankImageError when there is no digit to see."""
    # percentiles from np.partition, np.percentile's to the bit: its Python overhead was half the time of preparing
    # a 28x28 image and a third of preparing the page's 280x280 drawing
    return prepare_grey(as_grey(source), exact_percentile)


def prepare_many(pictures) -> tuple[torch.Tensor, list[int]]:
    """Pictures (anything `prepare_image` takes) prepared as uint8 (M, 28, 28), and the index of each one kept: a
    picture found blank is left out, as `predict` answers it "blank" before any model sees it."""
    out, kept = [], []
    for i, p in enumerate(pictures):
        try:
            out.append(prepare_image(p))
        except BlankImageError:
            continue
        kept.append(i)
    x = (torch.stack(out) * 255).round().to(torch.uint8) if out else torch.zeros(0, 28, 28, dtype=torch.uint8)
    return x, kept


def in_mnist_form(grey: np.ndarray) -> bool:
    """True for a picture MNIST's own preparation already made: 28x28, light ink on paper of exact black, the ink
    within 20x20 and its centre of mass within half a pixel of the centre (every one of MNIST's 70000 images is;
    a drawing or a photo, with paper that is not exactly black, is not)."""
    if grey.shape != (28, 28):
        return False
    rows, cols = np.flatnonzero(grey.any(1)), np.flatnonzero(grey.any(0))
    if not len(rows) or rows[-1] - rows[0] >= 20 or cols[-1] - cols[0] >= 20:
        return False
    mass = grey.sum()
    cy, cx = grey.sum(1) @ np.arange(28) / mass, grey.sum(0) @ np.arange(28) / mass
    return abs(cy - 14) <= 0.5 + 1e-9 and abs(cx - 14) <= 0.5 + 1e-9  # one MNIST test image sits at exactly 13.5


def prepare_grey(grey: np.ndarray, percentile) -> torch.Tensor:
    """`prepare_image` on grey levels in [0, 1], taking percentiles with `percentile` (np.percentile's signature).
    A picture already in MNIST's form (an MNIST image written as a file) is read as it is: preparing it again
    would move and blur its strokes, and `predict` on a data set's own images would disagree with `evaluate`."""
    if in_mnist_form(grey):
        return torch.from_numpy(np.ascontiguousarray(grey, dtype=np.float32))
    ink = ink_map(grey, percentile)
    rows, cols = ink_box(ink)
    crop = even_strokes(ink[rows, cols])
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.clip(np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS), dtype=np.float32), 0, 1)
    if not small.any():  # faint ink that vanished in the clean-up: say so rather than guess from an empty field
        raise BlankImageError("no digit found: the ink is too faint to make out a digit. Use darker ink or more "
                              "contrast.")
    return torch.from_numpy(centre_by_mass(small))


def prepare_whole(source: str | Path | bytes | Image.Image | np.ndarray) -> torch.Tensor:
    """Any image of a whole object (a Fashion-MNIST garment, an image-folder class) -> float (28, 28) in [0, 1]:
    grey, squashed to 28x28 as the folder loader squashes training images, inverted when its border is light
    (the data sets' objects are light on black). No cropping or centring: those are for handwritten digits."""
    grey = as_grey(source)
    if grey.shape != (28, 28):
        grey = np.asarray(Image.fromarray(grey).resize((28, 28), Image.Resampling.BILINEAR), dtype=np.float32)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if border.mean() > 0.5:
        grey = 1.0 - grey
    return torch.from_numpy(np.clip(grey, 0, 1).astype(np.float32))


def save_input(x: torch.Tensor, path: str | Path) -> Path:
    """Save a prepared 28x28 input as a PNG (white ink on black, as the model sees it), scaled up 8x to be seen."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray((x.clamp(0, 1).numpy() * 255).round().astype(np.uint8))
    img.resize((224, 224), Image.Resampling.NEAREST).save(path)
    return path


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given; a folder stands for the images directly inside it, sorted."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageError(f"{p}: a folder with no images ({', '.join(IMAGE_SUFFIXES)}) in it.")
            out += found
        else:
            out.append(p)
    return out
