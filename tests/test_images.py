"""`prepare_image`'s faster path (issue 28) gives what the path before it gave, to the bit.

The faster path skips the white composite under an image with no transparency, skips exif_transpose's copy when
there is no orientation to apply, takes percentiles from one np.partition (`exact_percentile`) and the 3x3 median
of the block grid from one sort. The reference below is the code as it was (commit 4308abf): `to_grey`,
`block_levels` and `ink_map` copied unchanged, np.percentile throughout; the steps after the ink map
(`ink_box`, `even_strokes`, `centre_by_mass`) were not touched and are shared."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from digitlab.data import images as I
from digitlab.data.images import BlankImageError, ImageError, exact_percentile, prepare_image


# --- the reference: the code before the faster path, unchanged ------------------------------------------------------
def ref_to_grey(im: Image.Image) -> np.ndarray:
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    im = im.convert("L")
    if max(im.size) > I.WORK_SIDE:
        f = I.WORK_SIDE / max(im.size)
        im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.Resampling.BOX)
    return np.asarray(im, dtype=np.float32) / 255.0


def ref_block_levels(grey: np.ndarray, q: float, blocks: int = 4) -> np.ndarray:
    h, w = grey.shape
    bh, bw = h // blocks, w // blocks
    cells = grey[:bh * blocks, :bw * blocks].reshape(blocks, bh, blocks, bw).transpose(0, 2, 1, 3)
    grid = np.percentile(cells.reshape(blocks, blocks, -1), q, axis=2).astype(np.float32)
    pad = np.pad(grid, 1, mode="edge")
    stack = np.stack([pad[i:i + blocks, j:j + blocks] for i in range(3) for j in range(3)])
    grid = np.median(stack, 0).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def ref_ink_map(grey: np.ndarray) -> np.ndarray:
    lo, paper, hi = np.percentile(grey[::2, ::2], [1, 50, 99])
    light_paper = (hi - paper) < (paper - lo) or (hi - lo < 1e-6 and paper > 0.5)
    if min(grey.shape) >= 48:
        background = ref_block_levels(grey, 90 if light_paper else 10)
    else:
        background = np.full_like(grey, np.percentile(grey, 90 if light_paper else 10))
    ink = (background - grey) if light_paper else (grey - background)
    strongest = float(np.percentile(ink, 99.9)) if ink.size else 0.0
    if strongest < I.MIN_CONTRAST:
        raise BlankImageError("blank")
    ink = np.clip(ink / strongest, 0, 1)
    ink[ink < I.INK_THRESHOLD] = 0
    return I.remove_specks(ink)


def ref_prepare(source) -> torch.Tensor:
    grey = ref_to_grey(I.open_image(source)) if not isinstance(source, np.ndarray) else I.as_grey(source)
    ink = ref_ink_map(grey)
    rows, cols = I.ink_box(ink)
    crop = I.even_strokes(ink[rows, cols])
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.clip(np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS), dtype=np.float32), 0, 1)
    if not small.any():
        raise BlankImageError("faint")
    return torch.from_numpy(I.centre_by_mass(small))


def outcome(prepare, source):
    """The prepared tensor, or the class of the error it raised."""
    try:
        return prepare(source)
    except (BlankImageError, ImageError) as e:
        return type(e)


# --- generated drawings ----------------------------------------------------------------------------------------------
def drawing(rng: np.random.Generator, i: int):
    """One varied drawing: as file bytes (PNG, JPEG, WebP) or an array; RGBA on transparency, RGBA opaque, grey,
    RGB, LA, P with a transparent colour; dark on light and light on dark; sizes from 20 to 500 pixels a side;
    uneven light, noise, specks, EXIF rotation; some blank or nearly so."""
    w, h = (int(v) for v in rng.integers(20, 500, 2)) if i % 5 else (280, 280)  # the page's canvas: often
    kind = ["rgba_clear", "rgba_opaque", "L", "RGB", "LA", "P_clear", "rgba_soft"][i % 7]
    light = rng.random() < 0.75
    paper, ink = (255, int(rng.integers(0, 120))) if light else (int(rng.integers(0, 60)), int(rng.integers(150, 256)))
    im = Image.new("L", (w, h), paper)
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(0, 4)) if i % 11 else 0):  # 0 strokes: blank
        pts = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(int(rng.integers(2, 6)))]
        d.line(pts, fill=ink, width=max(1, int(rng.integers(1, max(2, min(w, h) // 8)))))
    if rng.random() < 0.3:  # uneven light: a gradient over the paper
        ramp = np.linspace(0, float(rng.uniform(20, 90)), w, dtype=np.float32)[None, :] * np.ones((h, 1), np.float32)
        im = Image.fromarray(np.clip(np.asarray(im, np.float32) - ramp, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        arr = np.asarray(im, np.float32) + rng.normal(0, float(rng.uniform(1, 15)), (h, w))
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.2:
        im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 3))))
    grey = np.asarray(im)
    if kind == "rgba_clear" or kind == "rgba_soft":  # ink on a transparent canvas, alpha from the ink's strength
        alpha = np.abs(grey.astype(np.int16) - paper).clip(0, 255).astype(np.uint8)
        if kind == "rgba_soft":
            alpha = (alpha // 2 + 60).astype(np.uint8)
        rgb = np.stack([grey, np.roll(grey, 1, 0), grey // 2 + 60], -1)
        im = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    elif kind == "rgba_opaque":  # the page: black on a white fill, alpha 255 everywhere
        im = im.convert("RGBA")
    elif kind == "RGB":
        im = Image.fromarray(np.stack([grey, 255 - grey // 3, np.roll(grey, 2, 1)], -1))
    elif kind == "LA":
        im = Image.fromarray(np.dstack([grey, np.where(grey == paper, 0, 255).astype(np.uint8)]), "LA")
    elif kind == "P_clear":
        im = im.convert("P")
        im.info["transparency"] = int(np.asarray(im)[0, 0])
    if i % 9 == 4:
        return np.asarray(im)  # an array: uint8
    if i % 9 == 7:
        return np.asarray(im.convert("L"), np.float32) / 255  # an array: floats in [0, 1]
    fmt = "PNG" if kind in ("rgba_clear", "rgba_soft", "rgba_opaque", "LA", "P_clear") or i % 3 else \
        ("JPEG" if i % 2 else "WEBP")
    buf = io.BytesIO()
    exif = None
    if i % 13 == 0:  # rotated by its EXIF orientation, as a phone saves photos
        exif = Image.Exif()
        exif[0x0112] = int(rng.choice([3, 6, 8, 2]))
    im.save(buf, fmt, **({"exif": exif} if exif is not None else {}))
    return buf.getvalue()


@pytest.mark.slow
def test_fast_path_equals_the_reference_on_generated_drawings():
    """400 drawings of every kind: the same (28, 28) to the bit, or the same refusal."""
    rng = np.random.default_rng(28)
    kinds = {"tensor": 0, "blank": 0}
    for i in range(400):
        source = drawing(rng, i)
        want, got = outcome(ref_prepare, source), outcome(prepare_image, source)
        if isinstance(want, torch.Tensor):
            assert isinstance(got, torch.Tensor) and got.dtype == want.dtype, i
            assert got.numpy().tobytes() == want.numpy().tobytes(), i
            kinds["tensor"] += 1
        else:
            assert got is want, (i, got, want)
            kinds["blank"] += 1
    assert kinds["tensor"] > 200 and kinds["blank"] > 10, kinds  # both outcomes are exercised


def test_fast_path_equals_the_reference_on_the_pages_png(mnist):
    """What the page sends (black on a white fill, RGBA, 280x280) for 100 MNIST test digits."""
    for img in mnist["valid"].images[:100].numpy():
        buf = io.BytesIO()
        Image.fromarray(255 - img).resize((280, 280), Image.Resampling.BILINEAR).convert("RGBA").save(buf, "PNG")
        want, got = ref_prepare(buf.getvalue()), prepare_image(buf.getvalue())
        assert got.numpy().tobytes() == want.numpy().tobytes()


def test_an_opaque_pixel_over_white_is_itself():
    """The composite the opaque shortcut skips is the identity for every value of every channel."""
    v = np.arange(256, dtype=np.uint8)
    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = v[:, None], v[None, :], v[::-1][:, None], 255
    src = Image.fromarray(rgba, "RGBA")
    out = Image.alpha_composite(Image.new("RGBA", src.size, (255, 255, 255, 255)), src)
    assert np.array_equal(np.asarray(out), rgba)


@pytest.mark.parametrize("shape", [(7,), (784,), (1600,), (80, 80), (4, 4, 1600), (3, 5, 9)])
def test_exact_percentile_is_numpys_to_the_bit(shape):
    """Over all values and along the last axis, weak and list q, float32 and float64: numpy's value and dtype."""
    rng = np.random.default_rng(sum(shape))
    for a in (rng.random(shape, dtype=np.float32), (np.round(rng.random(shape) * 4) / 4).astype(np.float32),
              rng.normal(0, 1, shape)):
        for q in (0, 1, 10, 37.3, 50, 90, 99, 99.9, 100):
            for axis in (None, -1, a.ndim - 1):
                want, got = np.percentile(a, q, axis=axis), exact_percentile(a, q, axis=axis)
                assert np.asarray(got).dtype == np.asarray(want).dtype, (shape, q, axis)
                assert np.asarray(got).tobytes() == np.asarray(want).tobytes(), (shape, q, axis)
        want, got = np.percentile(a, [1, 50, 99]), exact_percentile(a, [1, 50, 99])
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    with_nan = rng.random(shape).astype(np.float32)
    with_nan.flat[0] = np.nan
    for axis in (None, -1):
        assert np.asarray(exact_percentile(with_nan, 50, axis=axis)).tobytes() == \
            np.asarray(np.percentile(with_nan, 50, axis=axis)).tobytes()
