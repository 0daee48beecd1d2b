"""Speedrun: the target's recipe through the fast path, every seed judged against the target."""

import pytest

from digitlab.speedrun import RECIPES, recipe_for, speedrun

from test_cli import digitlab


@pytest.mark.slow
def test_cpu_speedrun_to_99_percent():
    """The CPU recipe for 99.0% reaches it (one seed here; docs/recipes.md has the timings over seeds)."""
    res = speedrun(0.99, seeds=(1,), device="cpu")
    run = res["runs"][0]
    assert res["all_reached"] and run["accuracy"] >= 0.99, run
    assert 0 < run["seconds"] < 120 and res["recipe"] == RECIPES["cpu"][0.99].to_dict()


def test_each_device_kind_has_a_recipe_per_target():
    for kind in ("cpu", "cuda"):
        assert [recipe_for(t, kind).epochs >= 1 for t in (0.99, 0.995, 0.997)] == [True] * 3


def test_unknown_target_is_a_clear_error():
    proc = digitlab("speedrun", "--target", "0.5", check=False)
    assert proc.returncode == 2 and "no speedrun recipe for target 0.5" in proc.stderr
