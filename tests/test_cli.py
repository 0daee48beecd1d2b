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

from conftest import HANG_S, run_env

# the console script installed beside this Python, as a user's shell finds it; where the package is only on
# PYTHONPATH (the GPU machine runs the tests from a bare checkout), `python -m digitlab`, the same entry point
ENTRY = Path(sys.executable).parent / "digitlab"
DIGITLAB = str(ENTRY) if ENTRY.exists() else shutil.which("digitlab") or f"{sys.executable} -m digitlab"


def digitlab(*args, cwd=None, tmp_path=None, check=True, env=None):
    """The command in a real process; `env` adds variables to the test environment."""
    cmd = DIGITLAB.split() + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**run_env(tmp_path), **(env or {})},
                          timeout=HANG_S)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
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


def test_show_prints_a_shaded_table_and_saves_a_png(tmp_path, mnist):
    proc = digitlab("show", "0", "--digit", "3", "--png", tmp_path / "three.png")
    three = mnist["train"].images[mnist["train"].labels == 3][0]  # the first 3 of the training set
    assert proc.stdout.startswith("train image 0 of the 3s: label 3, rows"), proc.stdout[:200]
    assert f" {int(three.max())}" in proc.stdout  # its brightest grey value is in the table
    assert (tmp_path / "three.png").stat().st_size > 1000
    out_of_range = digitlab("show", "99999", "--digit", "3", check=False)
    assert out_of_range.returncode == 2 and "out of range" in out_of_range.stderr


@pytest.mark.slow
def test_the_console_script_exits_quickly_without_losing_output_or_the_exit_status(tmp_path):
    # The entry point leaves with os._exit after the atexit handlers: everything printed into a pipe (fully
    # buffered) must still arrive, and the status must be the command's.
    proc = digitlab("reproduce", "--stage", "pixel_similarity", "--out", tmp_path, "--no-plots", "--json")
    assert json.loads(proc.stdout)["stages"][0]["accuracy"] == 0.9511
    module = subprocess.run([sys.executable, "-m", "digitlab", "show", "0"], capture_output=True, text=True,
                            env=run_env(None), timeout=HANG_S)
    lines = module.stdout.splitlines()
    assert module.returncode == 0, module.stderr
    assert lines[0].startswith("train image 0: label 5, rows 4-14") and lines[-1].split()[0] == "14"  # every row
    bad = subprocess.run([sys.executable, "-m", "digitlab", "show", "99999"], capture_output=True, text=True,
                         env=run_env(None), timeout=HANG_S)
    assert bad.returncode == 2 and "out of range" in bad.stderr


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


@pytest.mark.slow
def test_demos(tmp_path):
    assert "gradient (by autograd) = 6" in digitlab("demo", "gradient", "--png", tmp_path / "g.png").stdout
    sgd = digitlab("demo", "sgd", "--steps", "5", "--png", tmp_path / "rc.png").stdout
    losses = [float(line.split("loss")[1]) for line in sgd.splitlines() if line.startswith("step")]
    assert len(losses) == 5 and losses[-1] < losses[0]
    digitlab("demo", "plot", "relu", "--png", tmp_path / "relu.png")
    for f in ("g.png", "rc.png", "relu.png"):
        assert (tmp_path / f).stat().st_size > 1000


@pytest.mark.slow
def test_help_on_every_command():
    for args in (["--help"], ["reproduce", "--help"], ["data", "export", "--help"], ["demo", "sgd", "--help"]):
        assert "Usage" in digitlab(*args).stdout
    for command in (["reproduce"], ["show"], ["data", "info"], ["data", "export"], ["demo", "gradient"], ["demo", "sgd"],
                    ["demo", "plot"], ["train"], ["evaluate"], ["runs"], ["predict"], ["export"]):
        text = digitlab(*command, "--help").stdout
        assert "Usage" in text and f"Example: digitlab {' '.join(command)}" in " ".join(text.split()), command


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run through the real command: 3 vs 7, linear, 2 epochs (a second of training)."""
    root = tmp_path_factory.mktemp("runs")
    proc = digitlab("train", "--task", "3v7", "--model", "linear", "--epochs", "2", "--lr", "0.1", "--runs", root,
                    "--name", "tiny")
    return root / "tiny", proc


@pytest.mark.slow
def test_train_prints_plain_epoch_lines_when_not_a_terminal(trained):
    run, proc = trained
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    metrics = json.loads((run / "metrics.json").read_text())
    for line, log in zip(lines[1:3], metrics):
        cells = line.split()
        assert int(cells[0]) == log["epoch"] and float(cells[3]) == pytest.approx(log["accuracy"], abs=1e-6)
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout  # no bar, no escape codes in a log
    assert f"run folder {run}" in proc.stdout and "report.html" in proc.stdout
    for name in ("report.html", "plots/confusion_matrix.png", "plots/weights.png", "interpretation.json"):
        assert (run / name).exists()


@pytest.mark.slow
def test_train_quiet_and_json(tmp_path):
    quiet = digitlab("train", "--task", "3v7", "--model", "linear", "--epochs", "1", "--runs", tmp_path, "--quiet")
    assert len(quiet.stdout.strip().splitlines()) == 1 and quiet.stdout.startswith("accuracy")
    js = json.loads(digitlab("train", "--task", "3v7", "--model", "linear", "--epochs", "1", "--runs", tmp_path,
                             "--name", "j", "--json").stdout)
    assert js["run"] == str(tmp_path / "j") and js["status"] == "finished" and js["accuracy"] > 0.9
    bad = digitlab("train", "--model", "resnet9000", "--runs", tmp_path, check=False)
    assert bad.returncode == 2 and "model must be one of" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_runs_lists_the_run_with_its_scores(trained):
    run, _ = trained
    rows = json.loads(digitlab("runs", "--runs", run.parent, "--json").stdout)
    summary = json.loads((run / "summary.json").read_text())
    assert rows[0]["run"] == str(run) and rows[0]["accuracy"] == summary["accuracy"]
    table = digitlab("runs", "--runs", run.parent).stdout
    assert "tiny" in table and f"{summary['accuracy']:.4f}" in table
    # named by its folder: the whole path (long under pytest-xdist's basetemp) wrapped and broke the name
    assert table.count(str(run.parent)) == 1  # in the title only
    empty = digitlab("runs", "--runs", run.parent / "nothing").stdout
    assert "no runs" in empty and "digitlab train" in empty


@pytest.mark.slow
def test_evaluate_rescores_with_per_digit_accuracy_and_confusion(trained):
    run, _ = trained
    res = json.loads(digitlab("evaluate", run, "--json").stdout)
    summary = json.loads((run / "summary.json").read_text())
    assert res["accuracy"] == pytest.approx(summary["accuracy"]) and res["n"] == 2038
    cm = res["confusion_matrix"]
    assert sum(map(sum, cm)) == 2038 and cm[0][1] + cm[1][0] == res["errors"]
    text = digitlab("evaluate", run).stdout
    assert "accuracy per digit" in text and "confusion matrix" in text


def draw_digit(path, digit: int, size=(300, 260), ink="navy", paper="lightyellow", width=14):
    """A digit drawn with strokes, as with a mouse: 1, 7 or 3 (the 3v7 model's classes and a one)."""
    from PIL import ImageDraw

    im = Image.new("RGB", size, paper)
    d = ImageDraw.Draw(im)
    if digit == 7:
        d.line([(90, 50), (210, 50), (130, 220)], fill=ink, width=width, joint="curve")
    elif digit == 3:
        d.arc([90, 40, 200, 130], 180, 90, fill=ink, width=width)
        d.arc([85, 120, 205, 225], 270, 160, fill=ink, width=width)
    im.save(path)
    return path


@pytest.mark.slow
def test_predict_on_my_own_drawings(trained, tmp_path):
    run, _ = trained
    seven, three = draw_digit(tmp_path / "seven.png", 7), draw_digit(tmp_path / "three.jpg", 3)
    Image.new("L", (120, 120), 255).save(tmp_path / "blank.png")
    res = json.loads(digitlab("predict", run, seven, three, tmp_path / "blank.png", "--json", "--show",
                              tmp_path / "seen").stdout)
    assert [r["label"] for r in res] == [7, 3, None]
    assert res[2]["blank"] and "no digit found" in res[2]["message"]
    assert abs(sum(res[0]["probabilities"].values()) - 1) < 1e-4 and set(res[0]["probabilities"]) == {"3", "7"}
    with Image.open(tmp_path / "seen" / "seven.png") as im:
        assert im.size == (224, 224)
    text = digitlab("predict", run, seven, tmp_path / "blank.png").stdout
    assert f"{seven}: 7" in text and "blank" in text
    (tmp_path / "notes.txt").write_text("hello")
    bad = digitlab("predict", run, tmp_path / "notes.txt", check=False)
    assert bad.returncode == 2 and "Use a PNG, JPEG or WebP" in bad.stdout
    missing = digitlab("predict", tmp_path / "no-run", seven, check=False)
    assert missing.returncode == 2 and "`digitlab runs` lists the runs" in missing.stderr


@pytest.mark.slow
def test_export_onnx_and_torchscript_through_the_command(trained, tmp_path, mnist):
    import onnxruntime as ort
    import torch

    from digitlab.predict import Classifier

    run, _ = trained
    x = mnist["valid"].images[:500].float().div(255).unsqueeze(1)
    with torch.no_grad():
        ref = Classifier.load(run).model(x)
    proc = digitlab("export", run, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert "same label as the original on 100.0% of 1000 test images" in proc.stdout
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    assert (got.argmax(1) == ref.argmax(1)).all() and torch.allclose(got, ref, atol=1e-4)
    digitlab("export", run, "--format", "torchscript")
    scripted = torch.jit.load(str(run / "model.pt"))
    assert torch.equal(scripted(x).argmax(1), ref.argmax(1))
    bad = digitlab("export", run, "--format", "keras", check=False)
    assert bad.returncode == 2 and "choose one of onnx, torchscript, web" in bad.stderr
    nowhere = digitlab("export", check=False)  # the shipped model, whose folder is the installed package
    assert nowhere.returncode == 2 and "--out FILE" in nowhere.stderr
