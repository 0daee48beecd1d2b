"""Run folders: what `record_run` writes, the interpretation figures, and `list_runs` on odd folders."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image

from digitlab.config import TrainConfig
from digitlab.interpret import Interpretation, confusion_matrix
from digitlab.runs import list_runs, new_run_dir, record_run
from digitlab.train.fit import fit
from digitlab.weights import load_model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = TrainConfig(task="3v7", model="linear", epochs=2, lr=0.1, device="cpu")
    result = fit(cfg)
    folder = new_run_dir(tmp_path_factory.mktemp("runs"), "r1")
    return record_run(result, folder), result


def test_record_run_writes_every_file(run):
    folder, result = run
    for name in ("config.json", "metrics.csv", "metrics.json", "model.safetensors", "summary.json",
                 "interpretation.json", "report.html", "plots/curves.png", "plots/lr_schedule.png",
                 "plots/confusion_matrix.png", "plots/top_losses.png", "plots/weights.png"):
        assert (folder / name).stat().st_size > 100, name
    rows = list(csv.DictReader(open(folder / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1] and {"train_loss", "valid_loss", "accuracy"} <= set(rows[0])
    config = json.loads((folder / "config.json").read_text())
    assert config["config"]["model"] == "linear" and config["environment"]["torch"] == torch.__version__
    model, meta = load_model(folder / "model.safetensors")
    assert meta["classes"] == [3, 7] and meta["task"] == "3v7"
    with Image.open(folder / "plots" / "weights.png") as im:
        assert im.size[0] > 150


def test_interpretation_matches_a_count_by_hand(run, mnist):
    folder, result = run
    saved = json.loads((folder / "interpretation.json").read_text())
    valid = result.data.valid
    with torch.no_grad():
        preds = result.model(valid.images.unsqueeze(1).float() / 255).argmax(1)
    by_hand = [[0, 0], [0, 0]]
    for a, p in zip(valid.labels.tolist(), preds.tolist()):
        by_hand[a][p] += 1
    assert saved["confusion_matrix"] == by_hand
    assert saved["per_class_accuracy"]["3"] == pytest.approx(by_hand[0][0] / sum(by_hand[0]))
    assert saved["accuracy"] == pytest.approx(json.loads((folder / "summary.json").read_text())["accuracy"])
    worst = saved["top_losses"]
    assert len(worst) == 9 and worst[0]["loss"] >= worst[-1]["loss"]
    assert all(w["predicted"] != w["actual"] for w in worst[:3])


def test_confusion_matrix_and_top_losses_by_definition():
    actual, preds = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 0, 2])
    assert confusion_matrix(actual, preds, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    interp = Interpretation(torch.zeros(3, 28, 28, dtype=torch.uint8), torch.tensor([0, 0, 1]), probs, [3, 7])
    top = interp.top_losses(2)
    assert [t["index"] for t in top] == [1, 2] and top[0]["predicted"] == 7 and top[0]["actual"] == 3
    assert top[0]["loss"] == pytest.approx(-torch.tensor(0.2).log().item()) and top[0]["probability"] == pytest.approx(0.8)
    assert interp.per_class_accuracy() == {3: 0.5, 7: 0.0} and interp.most_confused() == [(3, 7, 1), (7, 3, 1)]


def test_list_runs_reads_good_runs_and_survives_broken_ones(run, tmp_path):
    folder, _ = run
    rows = list_runs(folder.parent)
    assert rows[0]["run"] == str(folder) and rows[0]["status"] == "finished" and rows[0]["best_accuracy"] > 0.9
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (tmp_path / "not-a-run").mkdir()
    rows = list_runs(tmp_path)
    assert [r["run"] for r in rows] == [str(broken)] and rows[0]["status"] == "unfinished"
    assert new_run_dir(tmp_path, "broken") == tmp_path / "broken-1"


def test_progress_draws_a_bar_on_a_terminal_and_plain_lines_elsewhere():
    import io

    from rich.console import Console

    from digitlab.train.progress import ProgressCallback

    cfg = TrainConfig(task="3v7", model="linear", epochs=2, lr=0.1, device="cpu")
    term = Console(file=io.StringIO(), force_terminal=True, width=100)
    result = fit(cfg, cbs=[ProgressCallback(term)])
    shown = term.file.getvalue()
    assert "epoch 1/2 train" in shown and "\x1b[" in shown  # a live bar, drawn with escape codes
    assert "train_loss" in shown and f"{result.history[1]['accuracy']:.6f}" in shown
    lines = []
    fit(cfg, cbs=[ProgressCallback(Console(file=io.StringIO()), printer=lines.append)])
    assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "time"] and len(lines) == 3
    assert [line.split()[0] for line in lines[1:]] == ["0", "1"] and all("\x1b" not in line for line in lines)
    quiet = Console(file=io.StringIO(), force_terminal=True)
    fit(cfg, cbs=[ProgressCallback(quiet, mode="quiet")])
    assert quiet.file.getvalue() == ""
