"""The pictures that are not digits (data/nondigits.py): the page's canvas and pen, a seed gives the same pictures
and another seed others, font groups that share no font, and every picture something predict can read."""

from __future__ import annotations

import numpy as np
import pytest

from digitlab.data import nondigits
from digitlab.data.images import prepare_image
from digitlab.data.tasks import load_task

KINDS = ("closed", "open", "scribble", "letters")


@pytest.mark.parametrize("kind", KINDS)
def test_a_seed_gives_the_same_pictures_and_another_seed_others(kind):
    a, b = nondigits.make(kind, 6, 2), nondigits.make(kind, 6, 2)
    other = nondigits.make(kind, 6, 3)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert not any(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, other))
    for im in a:  # the page's canvas: white, with black ink covering a part of it, read by predict as ink
        pixels = np.asarray(im)
        assert im.size == (nondigits.CANVAS, nondigits.CANVAS) and pixels.max() == 255 and pixels.min() < 60
        assert 0.005 < (pixels < 128).mean() < 0.3
        assert prepare_image(im).max() > 0.5


def test_every_shape_is_drawn_and_a_circle_is_not_among_them():
    """A plain circle drawn alone is a fair 0, so it is not offered as a non-digit."""
    rng = np.random.default_rng(0)
    for kind in nondigits.CLOSED + nondigits.OPEN:
        assert (np.asarray(nondigits.shape(kind, rng)) < 128).any(), kind
    assert "circle" not in nondigits.CLOSED
    with pytest.raises(ValueError, match="unknown shape"):
        nondigits.shape("circle", rng)


def test_the_font_groups_share_no_font_and_no_letter_reads_as_a_digit():
    groups = nondigits.font_split()
    names = [set(f.name for f in g) for g in groups.values()]
    assert all(names) and not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert sum(map(len, names)) == len(nondigits.text_fonts())
    assert not set(nondigits.LETTERS) & set("0123456789OoIlSZBGqbgz")


def test_drawn_digits_are_the_mnist_digits_inked_on_the_canvas():
    test = load_task("digits").test
    drawn = nondigits.make("drawn_digits", 3, 2, digits=test.images.numpy())
    for im in drawn:
        pixels = np.asarray(im)
        assert set(np.unique(pixels)) == {0, 255}  # a hard-edged ink, as a mouse draws
    with pytest.raises(ValueError, match="unknown kind"):
        nondigits.make("faces", 1, 0)


def test_the_detector_choice_asks_each_digit_bar_to_be_cleared_by_two_standard_errors():
    """benchmarks/exposure.py's rule: the fourth exposure_map design was chosen with its drawn digits one standard
    error over the bar (98.23% of 3,000) and fell under it on the test; the rule now refuses that, and takes the
    fifth's 98.73%."""
    from benchmarks.exposure import clears

    assert not clears(0.9823, 3000, 0.98) and clears(0.9873, 3000, 0.98)
    assert clears(0.99, 100_000, 0.989) and not clears(0.99, 100, 0.98)  # the margin shrinks as n grows
