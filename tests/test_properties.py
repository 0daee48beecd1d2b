"""Property-based tests: at least 10000 generated inputs each to the IDX reader, the image-folder loader and
the prediction preprocessing. Whatever the input, the only exceptions are our own documented errors."""

from __future__ import annotations

import functools
import io
import math
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from digitlab.data.folders import load_folder
from digitlab.data.idx import IDX_DTYPES, parse_idx
from digitlab.data.images import BlankImageError, ImageError, prepare_image
from digitlab.errors import DataError, IdxError

MANY = settings(max_examples=10_000, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def idx_like(draw):
    """Mostly well-formed headers with random type codes, dims and data lengths (the exact length half the time
    when it is small), plus raw noise."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    code = draw(st.sampled_from([*IDX_DTYPES, 0, 7, 0x10]))
    dims = draw(st.lists(st.integers(0, 2**32 - 1) if draw(st.booleans()) else st.integers(0, 6), max_size=4))
    head = bytes([0, draw(st.sampled_from([0, 0, 1])), code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    exact = math.prod(dims) * IDX_DTYPES[code].itemsize if code in IDX_DTYPES else -1
    if 0 <= exact <= 512 and draw(st.booleans()):
        return head + draw(st.binary(min_size=exact, max_size=exact))
    return head + draw(st.binary(max_size=128))


def run_counted(check) -> dict:
    """Run a property (a function of one example that returns True when the input was accepted) under MANY;
    count the examples it really saw and how many were accepted: max_examples alone is only a ceiling."""
    seen = {"examples": 0, "accepted": 0}

    @functools.wraps(check)  # the same signature, which @given reads
    def counted(*args, **kwargs):
        seen["examples"] += 1
        seen["accepted"] += bool(check(*args, **kwargs))

    return seen, counted


@pytest.mark.slow
def test_idx_reader_raises_only_idx_error_and_reads_what_the_header_says():
    def check(data):
        try:
            array = parse_idx(data, "fuzz.idx")
        except IdxError as e:
            assert "fuzz.idx" in str(e)
            return False
        ndim = data[3]
        assert array.shape == struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
        assert array.astype(IDX_DTYPES[data[2]]).tobytes() == data[4 + 4 * ndim:]  # every value, big-endian
        return True

    seen, counted = run_counted(check)
    MANY(given(idx_like())(counted))()
    assert seen["examples"] >= MANY.max_examples and seen["accepted"] >= MANY.max_examples // 20, seen


FOLDER_FILE = st.one_of(st.tuples(st.just("png"), st.one_of(st.just((28, 28)), st.tuples(st.integers(1, 40),
                                                                                     st.integers(1, 40))),
                                   st.integers(0, 255)),
                        st.tuples(st.just("junk"), st.binary(max_size=40)))


@st.composite
def folder_tree(draw):
    """A few label folders (good or bad names) holding PNGs (28x28 half the time, else of any small size), empty
    or junk files. The files are one flat list dealt out to the folders: half the draws of a list per folder,
    which halves the time hypothesis takes to make the 10000 trees."""
    folders = draw(st.lists(st.sampled_from(["3", "7", "0", "9", "x", "10"]), max_size=3, unique=True))
    files = {name: [] for name in folders}
    for i, f in draw(st.lists(st.tuples(st.integers(0, 2), FOLDER_FILE), max_size=9)):
        if folders:
            files[folders[i % len(folders)]].append(f)
    return files


@pytest.mark.slow
def test_folder_loader_raises_only_data_error_and_reads_what_was_written():
    """Every generated tree either loads (often: every PNG, resized to 28x28, with the index of its class folder
    among the sorted folder names, in file-name order across the classes) or raises DataError."""
    def check(tree, skip_bad):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for name, files in tree.items():
                (root / name).mkdir()
                for i, f in enumerate(files):
                    if f[0] == "png":
                        Image.new("L", f[1][::-1], f[2]).save(root / name / f"{i}.png")
                    else:
                        (root / name / f"{i}.bin").write_bytes(f[1])
            try:
                split, _ = load_folder(root, skip_bad=skip_bad)
            except DataError:
                return False
        classes = sorted(tree)
        kept = sorted((f"{i}.png", c, f[2]) for c, name in enumerate(classes) for i, f in enumerate(tree[name])
                      if f[0] == "png")  # junk files have no image suffix: not images, not read
        assert split.images.shape == (len(kept), 28, 28) and split.labels.tolist() == [c for _, c, _ in kept]
        lows, highs = split.images.amin((1, 2)).tolist(), split.images.amax((1, 2)).tolist()
        assert all(abs(lo - grey) <= 1 and abs(hi - grey) <= 1 for lo, hi, (_, _, grey) in zip(lows, highs, kept))
        return True

    seen, counted = run_counted(check)
    MANY(given(folder_tree(), st.booleans())(counted))()
    # a tree loads only when it has a class folder and none of them is empty
    assert seen["examples"] >= MANY.max_examples and seen["accepted"] >= MANY.max_examples // 50, seen


image_arrays = st.integers(1, 48).flatmap(lambda h: st.integers(1, 48).flatmap(
    lambda w: st.one_of(
        st.binary(min_size=h * w, max_size=h * w).map(lambda b: np.frombuffer(b, np.uint8).reshape(h, w)),
        st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, h - 1), st.integers(0, w - 1)).map(
            lambda t: stroke(h, w, *t)))))


def stroke(h, w, paper, ink, r, c):
    """Paper of one grey with a short line of ink: the common case of a real drawing."""
    a = np.full((h, w), paper, np.uint8)
    a[r, : max(1, w // 2)] = ink
    a[: max(1, h // 2), c] = ink
    return a


def encoded(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.slow
def test_preprocessing_raises_only_image_errors():
    def check(array, kind, noise):
        source = array if kind == "array" else noise if kind == "noise" else encoded(array, kind)
        try:
            x = prepare_image(source)
        except (ImageError, BlankImageError):
            return False
        assert x.shape == (28, 28) and x.dtype.is_floating_point
        assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.max()) > 0
        return True

    seen, counted = run_counted(check)
    MANY(given(image_arrays, st.sampled_from(["array", "PNG", "JPEG", "noise"]), st.binary(max_size=64))(counted))()
    assert seen["examples"] >= MANY.max_examples and seen["accepted"] >= MANY.max_examples // 20, seen
