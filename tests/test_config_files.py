"""Config files, TensorBoard event files and run comparison: a practitioner's tools, through the real command."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from conftest import HANG_S, run_env
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError
from digitlab.recipes import RECIPES

SMALL = ["--task", "3v7", "--model", "linear", "--epochs", "2", "--lr", "0.1", "--device", "cpu", "-q"]


def digitlab(*args, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "digitlab"
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env or run_env(cwd), timeout=HANG_S)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained from flags, and the same run again from its saved config.toml."""
    root = tmp_path_factory.mktemp("cfg")
    digitlab("train", *SMALL, "--name", "flags", cwd=root)
    digitlab("train", "--config", "runs/flags/config.toml", "--name", "from-file", "-q", cwd=root)
    return root


@pytest.mark.slow
def test_a_runs_config_toml_reproduces_it_bit_for_bit(trained):
    runs = trained / "runs"
    a, b = load_file(runs / "flags" / "model.safetensors"), load_file(runs / "from-file" / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert (runs / "flags" / "config.toml").read_text() == (runs / "from-file" / "config.toml").read_text()
    assert json.loads((runs / "from-file" / "config.json").read_text())["config"]["model"] == "linear"


@pytest.mark.slow
def test_flags_override_the_file_and_print_config_prints_the_resolved_toml(trained):
    proc = digitlab("train", "--config", "runs/flags/config.toml", "--seed", "7", "--print-config", cwd=trained)
    printed = trained / "printed.toml"
    printed.write_text(proc.stdout)
    cfg = TrainConfig.resolve(printed)
    assert cfg == TrainConfig(task="3v7", model="linear", epochs=2, lr=0.1, device="cpu", seed=7)
    assert not (trained / "runs" / "printed").exists() and len(list((trained / "runs").iterdir())) == 2  # no run


@pytest.mark.slow
def test_recipes_print_as_config_files_that_train_reads(tmp_path, capsys):
    """Every recipe's --print-config is a file train reads back to the same config: the command in a real process
    for the default recipe, the same CLI entry point in this process for the rest (twelve processes cost 20 s)."""
    from digitlab.cli import main

    proc = digitlab("recipe", "default", "--print-config", cwd=tmp_path)
    capsys.readouterr()
    for name, recipe in RECIPES.items():
        assert main(["recipe", name, "--print-config"]) == 0, name
        printed = capsys.readouterr().out
        assert name != "default" or printed == proc.stdout
        (tmp_path / f"{name}.toml").write_text(printed)
        assert TrainConfig.resolve(tmp_path / f"{name}.toml") == recipe.train_config(), name


@pytest.mark.parametrize("text, message", [("epoch = 3\n", "unknown field"), ("epochs = 'ten'\n", "epochs"),
                                           ("augment = 1\n", "augment"), ("epochs = \n", "not a readable TOML"),
                                           ("lr = -1.0\n", "lr must be positive")])
def test_a_bad_config_file_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        TrainConfig.resolve(path)
    proc = digitlab("train", "--config", path, "--print-config", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and str(path) in proc.stderr.replace("\n", "")


def event_values(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a run's TensorBoard files, read back by tensorboard's own reader."""
    ea = EventAccumulator(str(log_dir), size_guidance={"tensors": 0, "scalars": 0, "images": 0})
    ea.Reload()
    values = {tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto).item()) for e in ea.Tensors(tag)]
              for tag in ea.Tags()["tensors"]}
    values["images"] = ea.Tags()["images"]
    values.update({tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]})  # hparams
    return values


@pytest.mark.slow
def test_event_files_match_metrics_csv_to_the_last_digit(trained):
    run = trained / "runs" / "flags"
    events = event_values(run / "tensorboard")
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    for column in ("train_loss", "valid_loss", "accuracy", "time"):
        assert events[f"epoch/{column}"] == [(int(r["epoch"]), float(r[column])) for r in rows], column
    steps = len(events["step/loss"])
    assert steps == 2 * math.ceil(12396 / 256) and [s for s, _ in events["step/lr"]] == list(range(steps))
    assert {"confusion_matrix", "top_losses", "curves", "lr_schedule"} <= set(events["images"])
    summary = json.loads((run / "summary.json").read_text())
    assert events["hparam/accuracy"][0][1] == pytest.approx(summary["accuracy"], abs=1e-7)  # float32 in the HParams tab


def test_without_tensorboard_training_works_and_says_how_to_get_the_events(tmp_path):
    """A real process in which `import tensorboard` fails, as where the extra is not installed."""
    shadow = tmp_path / "shadow" / "tensorboard"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed here')\n")
    env = {**run_env(tmp_path), "PYTHONPATH": str(tmp_path / "shadow")}
    proc = digitlab("train", *SMALL, "--name", "plain", cwd=tmp_path, env=env)
    run = tmp_path / "runs" / "plain"
    assert (run / "model.safetensors").is_file() and not (run / "tensorboard").exists()
    assert proc.stderr.count("digitlab[tensorboard]") == 1


@pytest.fixture(scope="module")
def three_runs(trained):
    """Three runs that differ in their seed (and one in its epochs), for comparison."""
    digitlab("train", *SMALL, "--seed", "1", "--epochs", "3", "--name", "seed1", cwd=trained)
    return [trained / "runs" / n for n in ("flags", "from-file", "seed1")]


@pytest.mark.slow
def test_compare_lists_config_differences_and_final_metrics(three_runs, trained):
    proc = digitlab("runs", "--compare", *three_runs[:2], str(trained / "runs" / "seed*"), "--html",
                    trained / "cmp.html", "--json", cwd=trained)
    res = json.loads(proc.stdout)
    assert res["differences"] == {"epochs": [2, 2, 3], "seed": [42, 42, 1]}
    own = [json.loads((run / "summary.json").read_text()) for run in three_runs]
    assert own[0]["accuracy"] != own[2]["accuracy"]  # two different runs, so a page of one run's figures shows
    for run, m, s in zip(three_runs, res["metrics"], own):  # each run's own final metrics and curves
        assert m["run"] == str(run) and {k: m[k] for k in ("accuracy", "errors", "epochs_done")} == \
            {k: s[k] for k in ("accuracy", "errors", "epochs_done")}, run.name
        assert res["histories"][str(run)] == json.loads((run / "metrics.json").read_text()), run.name
    page = (trained / "cmp.html").read_text()
    metrics_table = page[page.index("<h2>Final metrics</h2>"):page.index("<h2>Learning curves</h2>")]
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td>", metrics_table)  # run name, accuracy
    assert rows == [(run.name, f"{s['accuracy']:.4f}") for run, s in zip(three_runs, own)]
    text = digitlab("runs", "--compare", *three_runs, "--html", trained / "all.html", cwd=trained)
    assert "config differences" in text.stdout and "all.html" in text.stdout
    final = text.stdout[text.stdout.index("final metrics"):]
    cells = [[c.strip() for c in re.split(r"[│┃|]", line) if c.strip()] for line in final.splitlines()]
    shown = {c[0]: c[1] for c in cells if len(c) > 1 and c[0] in ("flags", "seed1")}  # run: accuracy column
    assert shown == {"flags": f"{own[0]['accuracy']:.4f}", "seed1": f"{own[2]['accuracy']:.4f}"}, final
    bad = digitlab("runs", "--compare", three_runs[0], cwd=trained, check=False)
    assert bad.returncode == 2 and "at least two runs" in bad.stderr


@pytest.mark.slow
def test_the_compare_page_shows_three_curves_per_plot_in_chromium(three_runs, trained):
    from playwright.sync_api import sync_playwright  # deferred: the browser driver, for this test only

    from test_browser import ARGS, CHROMIUM

    page_file = trained / "three.html"
    digitlab("runs", "--compare", *three_runs, "--html", page_file, cwd=trained)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(page_file.as_uri())
        plots = page.locator("figure.plot")
        assert plots.count() == 3
        for i in range(3):
            curves = plots.nth(i).locator("[id^='curve-']")
            assert curves.count() == 3, plots.nth(i).get_attribute("data-metric")
            assert all(curves.nth(j).bounding_box()["width"] > 50 for j in range(3))  # drawn, not empty
        assert page.locator("text=config differences").count() == 1
        page.screenshot(path=str(trained / "compare.png"), full_page=True)
        browser.close()
