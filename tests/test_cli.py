"""The digitlab command, run as a user runs it: a real process through the installed entry point."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import run_env

# the console script installed beside this Python, as a user's shell finds it
ENTRY = Path(sys.executable).parent / "digitlab"
DIGITLAB = str(ENTRY) if ENTRY.exists() else shutil.which("digitlab")


def digitlab(*args, cwd=None, tmp_path=None, check=True):
    cmd = DIGITLAB.split() + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=run_env(tmp_path), timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_reproduce_prints_the_table_and_writes_json_csv_and_plots(tmp_path):
    proc = digitlab("reproduce", "--out", tmp_path / "rep", cwd=tmp_path)
    for stage in ("pixel similarity (L1)", "linear by hand", "linear, BasicOptim", "linear, SGD",
                  "linear, Learner.fit", "simple net, Learner.fit"):
        assert stage in proc.stdout
    assert "0.9511" in proc.stdout  # pixel similarity, exactly the book's figure
    record = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert [r["stage"] for r in record["stages"]][-1] == "simple net, Learner.fit" and record["seed"] == 42
    rows = list(csv.DictReader(open(tmp_path / "rep" / "results.csv")))
    assert len(rows) == 6 and set(rows[0]) == {"stage", "accuracy", "book", "epochs", "seconds"}
    for name in ("mean_3_and_7", "linear_weights", "recorder_curves", "accuracy_per_epoch"):
        with Image.open(tmp_path / "rep" / f"{name}.png") as im:
            assert im.size[0] > 100
    again = json.loads(digitlab("reproduce", "--out", tmp_path / "rep2", "--json", "--no-plots").stdout)
    assert [r["accuracy"] for r in again["stages"]] == [r["accuracy"] for r in record["stages"]]  # same seed, same table


def test_reproduce_one_stage_and_a_bad_stage(tmp_path):
    proc = digitlab("reproduce", "--stage", "linear_by_hand", "--out", tmp_path, "--no-plots")
    assert "linear by hand" in proc.stdout and "simple net" not in proc.stdout
    bad = digitlab("reproduce", "--stage", "nope", "--out", tmp_path, check=False)
    assert bad.returncode == 2 and "unknown stage(s) nope; choose from" in bad.stderr


def test_show_prints_a_shaded_table_and_saves_a_png(tmp_path):
    proc = digitlab("show", "0", "--digit", "3", "--png", tmp_path / "three.png")
    assert "label 3" in proc.stdout and "255" in proc.stdout or "253" in proc.stdout
    assert (tmp_path / "three.png").stat().st_size > 1000
    out_of_range = digitlab("show", "99999", "--digit", "3", check=False)
    assert out_of_range.returncode == 2 and "out of range" in out_of_range.stderr


def test_data_info_counts():
    proc = digitlab("data", "info")
    assert "60000" in proc.stdout and "10000" in proc.stdout and "6742" in proc.stdout


def test_bad_data_folder_gives_a_clear_error(tmp_path):
    proc = digitlab("data", "info", "--data", tmp_path, check=False)
    assert proc.returncode == 2
    assert "no train-images-idx3-ubyte.gz" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_data_export_writes_the_books_folders(tmp_path):
    proc = digitlab("data", "export", tmp_path / "sample")
    assert "3: 6131, 7: 6265" in proc.stdout and "3: 1010, 7: 1028" in proc.stdout
    assert len(list((tmp_path / "sample" / "valid" / "3").glob("*.png"))) == 1010


def test_demos(tmp_path):
    assert "gradient (by autograd) = 6" in digitlab("demo", "gradient", "--png", tmp_path / "g.png").stdout
    sgd = digitlab("demo", "sgd", "--steps", "5", "--png", tmp_path / "rc.png").stdout
    losses = [float(line.split("loss")[1]) for line in sgd.splitlines() if line.startswith("step")]
    assert len(losses) == 5 and losses[-1] < losses[0]
    digitlab("demo", "plot", "relu", "--png", tmp_path / "relu.png")
    for f in ("g.png", "rc.png", "relu.png"):
        assert (tmp_path / f).stat().st_size > 1000


def test_help_on_every_command():
    for args in (["--help"], ["reproduce", "--help"], ["data", "export", "--help"], ["demo", "sgd", "--help"]):
        assert "Usage" in digitlab(*args).stdout
