"""Speedrun: the target's recipe through the fast path, every seed judged against the target."""

import pytest

from digitlab.hardware import auto_precision
from digitlab.recipes import RECIPES
from digitlab.speedrun import TARGETS, recipe_for, speedrun

from test_cli import digitlab


@pytest.mark.slow
def test_cpu_speedrun_to_99_percent():
    """The CPU recipe for 99.0% reaches it (one seed here; docs/recipes.md has the timings over seeds)."""
    res = speedrun(0.99, seeds=(1,), device="cpu", warmup=False)  # the accuracy is checked here, not the time
    run = res["runs"][0]
    assert res["all_reached"] and run["accuracy"] >= 0.99, run
    # no wall-clock bar here (it would fail on a slower CPU, not on a bug): the times per machine class are in
    # benchmarks/results/speedrun-*.json
    expected = recipe_for(0.99, "cpu", auto_precision("cpu").name)  # fastcnn_small where the CPU trains in fp32
    assert run["seconds"] > 0 and res["recipe"] == expected.to_dict()


def test_each_device_kind_has_a_recipe_per_target():
    """A CUDA device gets the compiled GPU recipes, any other device type the CPU's, for every target; all of
    them live in the one recipe table (`digitlab recipe speedrun-...` runs them too)."""
    for t in TARGETS:
        assert recipe_for(t, "cuda") == RECIPES[f"speedrun-{t}-cuda"].train_config() and recipe_for(t, "cuda").compile
        assert recipe_for(t, "cpu") == recipe_for(t, "mps") == RECIPES[f"speedrun-{t}-cpu"].train_config()
        assert not recipe_for(t, "cpu").compile and recipe_for(t, "cpu").valid_size == 0
        assert recipe_for(t, "cuda", "fp32") == recipe_for(t, "cuda")  # a GPU's recipes whatever its precision
    # a CPU that trains in fp32 has its own 0.99 recipe; the others keep the bf16 CPU's
    assert recipe_for(0.99, "cpu", "fp32") == RECIPES["speedrun-0.99-cpu-fp32"].train_config() != recipe_for(0.99, "cpu")
    assert recipe_for(0.995, "cpu", "fp32") == recipe_for(0.995, "cpu")


def test_unknown_target_is_a_clear_error():
    proc = digitlab("speedrun", "--target", "0.5", check=False)
    assert proc.returncode == 2 and "no speedrun recipe for target 0.5" in proc.stderr
