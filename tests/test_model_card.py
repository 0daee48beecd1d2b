"""The shipped model's card (src/digitlab/pretrained/README.md) says what the file is: every figure in its table is
checked against the file's own metadata, the UCI figure by scoring the UCI digits again, the choice of seed
against the benchmark's record, and the bars of issue 18 (test accuracy at least 99.5%, calibrated test ECE at
most 1%, UCI digits above 0.8703) against the file's metadata and the scoring, never against the card's text."""

import json
import re
from pathlib import Path
from importlib import resources

import numpy as np
import pytest

from digitlab.data.uci import uci_digits
from digitlab.models.layers import n_params
from digitlab.assess import accuracy_on
from digitlab.predict import Classifier
from digitlab.weights import load_model, read_weights

PRETRAINED = resources.files("digitlab") / "pretrained"
RECORD = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "default-recipe-mnist.json"


@pytest.fixture(scope="module")
def card() -> dict[str, str]:
    """The card's figure table: first column -> second column."""
    rows = re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|$", (PRETRAINED / "README.md").read_text(), re.M)
    return {k: v for k, v in rows if k not in ("figure", "---")}


@pytest.fixture(scope="module")
def meta() -> dict:
    return read_weights(PRETRAINED / "digits-cnn.safetensors")[1]


def number(text: str) -> float:
    return float(re.match(r"[-\d.]+", text.strip()).group())


def test_the_cards_figures_are_the_files_metadata(card, meta):
    cfg, scores = meta["config"], meta["scores"]
    assert card["model"] == f"`{meta['model']}`" and number(card["seed"]) == cfg["seed"]
    assert number(card["parameters"]) == n_params(load_model(PRETRAINED / "digits-cnn.safetensors")[0])
    assert number(card["epochs"]) == meta["epochs"] == cfg["epochs"] and card["engine"] == cfg["engine"]
    assert number(card["validation images (held out of training)"]) == cfg["valid_size"] == scores["n_valid"]
    assert number(card["validation accuracy"]) == pytest.approx(scores["valid_accuracy"], abs=5e-5)
    assert number(card["test accuracy"]) == pytest.approx(scores["test_accuracy"], abs=5e-5)
    assert f"{scores['test_errors']} errors in {scores['n_test']}" in card["test accuracy"]
    before, after = (number(x) / 100 for x in card["test ECE, 15 bins: before / after the temperature"].split("/"))
    assert before == pytest.approx(scores["ece"], abs=5e-5) and after == pytest.approx(scores["ece_calibrated"], abs=5e-5)
    assert number(card["temperature"]) == pytest.approx(meta["temperature"], abs=5e-5)
    detector, threshold = card["not-a-digit detector"].split(", threshold ")
    assert detector == meta["ood"]["detector"] and number(threshold) == pytest.approx(meta["ood"]["threshold"], abs=0.05)
    assert f"{meta['ood']['accept']:.1%} of the validation digits" in card["not-a-digit detector"]
    if meta["ood"]["detector"] == "exposure_map":  # it learns from every training digit, not FIT_IMAGES of them
        assert meta["ood"]["n_fit"] == 60000 - cfg["valid_size"]   # MNIST's training file less the validation split


def test_the_cards_detector_figures_are_those_measured_through_predict(card):
    """Issue 27's figures in the card's detector row are the record of benchmarks/nondigits.py for this file."""
    rec = json.loads((RECORD.parent / "nondigits-shipped.json").read_text())
    row, rows = card["not-a-digit detector"], rec["rows"]
    assert Path(rec["model"]).name == "digits-cnn.safetensors"
    for key in ("closed", "open", "scribble", "letters", "fashion_test", "mnist_test"):
        assert f"{rows[key]['flagged']:.2%}" in row, key
    assert f"{rows['uci_digits']['accepted']:.2%}" in row
    assert f"{rows['drawn_digits']['right_and_accepted']:.2%}" in row


def test_the_shipped_model_meets_its_bars(meta):
    """From the file's own scores (the UCI bar: the slow test below, which scores the UCI digits)."""
    assert meta["scores"]["test_accuracy"] >= 0.995
    assert meta["scores"]["ece_calibrated"] <= 0.01 and meta["scores"]["ece_calibrated"] < meta["scores"]["ece"]


def test_the_shipped_model_is_the_recorded_seed_best_on_validation(meta):
    """The benchmark's record (python -m benchmarks.default_recipe): the file's seed is the one of best validation
    accuracy, and the file scores as that seed's run did, to the bit (CPU training is deterministic here); the
    card's list of validation scores is the record's."""
    runs = json.loads(RECORD.read_text())["runs"]
    best = max(runs, key=lambda r: r["valid_accuracy"])
    assert meta["config"]["seed"] == best["seed"] and meta["temperature"] == best["temperature"]
    keys = ("valid_accuracy", "test_accuracy", "test_errors", "ece", "ece_calibrated", "nll", "nll_calibrated")
    assert {k: meta["scores"][k] for k in keys} == {k: best[k] for k in keys}
    text = (PRETRAINED / "README.md").read_text().replace("\n", " ")
    said = re.search(r"seeds ([\d, ]+) gave ([\d.%, ]+) on validation", text)
    assert said and said[1] == ", ".join(str(r["seed"]) for r in runs), "the card's seeds are the record's"
    assert said[2] == ", ".join(f"{r['valid_accuracy']:.2%}" for r in runs)


@pytest.mark.slow
def test_the_cards_uci_figure_is_what_the_model_scores():
    clf = Classifier.load(PRETRAINED / "digits-cnn.safetensors")
    images, labels = uci_digits()
    res = accuracy_on(clf, list(images), labels)
    card_rows = dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|$", (PRETRAINED / "README.md").read_text(), re.M))
    assert number(card_rows["UCI digits accuracy"]) == pytest.approx(res["accuracy"], abs=5e-5)
    assert f"{res['n']} images" in card_rows["UCI digits accuracy"] and len(np.unique(labels)) == 10
    assert res["accuracy"] > 0.8703  # issue 18's bar, on the figure just scored
