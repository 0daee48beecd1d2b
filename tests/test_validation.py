"""Accuracy that can be trusted: a validation split carved from the training images, the test set read once at
the end, and calibrated confidence (expected calibration error, NLL, temperature scaling)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from digitlab.calibration import apply_temperature, calibration_report, expected_calibration_error, fit_temperature, nll
from digitlab.config import TrainConfig
from digitlab.data.mnist import Split
from digitlab.data.tasks import TaskData, load_task, stratified_split
from digitlab.errors import ConfigError
from digitlab.predict import Classifier
from digitlab.train.fit import EpochLogs, fit

from test_config_files import SMALL, digitlab


def test_the_validation_split_is_stratified_fixed_and_apart_from_training(mnist):
    data = load_task("digits")
    assert (len(data.train), len(data.valid), len(data.test)) == (55000, 5000, 10000)
    counts = torch.bincount(mnist["train"].labels, minlength=10).double()
    assert (torch.bincount(data.valid.labels, minlength=10) - counts * 5000 / 60000).abs().max() < 1
    again = load_task("digits")  # the carve does not depend on anything but its own seed
    assert torch.equal(again.valid.images, data.valid.images) and torch.equal(again.train.labels, data.train.labels)
    train_rows = {bytes(x) for x in data.train.images[:, 10:18, 10:18].reshape(len(data.train), -1).numpy()[:20000]}
    assert sum(bytes(x) in train_rows for x in data.valid.images[:, 10:18, 10:18].reshape(5000, -1).numpy()) < 50
    assert torch.equal(data.test.labels, mnist["valid"].labels)  # the 10000 test images, untouched
    everything = load_task("digits", valid_size=0)
    assert len(everything.train) == 60000 and len(everything.valid) == 0 and everything.final is everything.test
    book = load_task("3v7")
    assert book.test is None and len(book.valid) == 2038 and book.final is book.valid  # the book's split


def test_a_split_too_large_is_a_clear_error(mnist):
    with pytest.raises(ConfigError, match="valid_size must be between 0 and"):
        stratified_split(mnist["valid"], 10000)
    with pytest.raises(ConfigError, match="valid_size must be 0 or more"):
        TrainConfig(valid_size=-1)


class Poisoned(torch.Tensor):
    """A tensor that raises on any use until `Poisoned.open` is set: where the test set must not be read."""
    open = False

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if not cls.open:
            raise AssertionError(f"the test set was read during training ({func.__name__})")
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


def small_digits_with_a_poisoned_test_set() -> TaskData:
    data = load_task("digits")
    test = Split(data.test.images[:2000].as_subclass(Poisoned), data.test.labels[:2000].as_subclass(Poisoned))
    return TaskData(Split(data.train.images[:4096], data.train.labels[:4096]),
                    Split(data.valid.images[:1000], data.valid.labels[:1000]), data.classes, test)


@pytest.mark.parametrize("engine", ["learner", "fast"])
def test_training_never_reads_the_test_set_before_the_final_score(engine):
    """Any use of the test tensors during training raises; the first epochs' end opens them, and only then are
    they scored (the fast engine's last epoch hook, the Learner's after_fit)."""
    Poisoned.open = False
    data = small_digits_with_a_poisoned_test_set()
    cfg = TrainConfig(model="linear", epochs=2, lr=0.1, bs=128, engine=engine, device="cpu", augment=False)
    opened = []

    def open_after_last_epoch(log):
        if log["epoch"] == cfg.epochs - 1:
            Poisoned.open = True
            opened.append(log["epoch"])
    try:
        with pytest.raises(AssertionError, match="test set was read"):  # the poison works
            data.test.images.float()
        result = fit(cfg, [EpochLogs(open_after_last_epoch)], data=data)
    finally:
        Poisoned.open = False
    s = result.summary
    assert opened == [1] and s["n_test"] == 2000 and s["n_valid"] == 1000 and s["accuracy"] == s["test_accuracy"]
    assert 0.5 < s["valid_accuracy"] < 1 and 0.5 < s["test_accuracy"] < 1


def test_expected_calibration_error_by_hand():
    # two bins used: confidence 0.9 (4 images, 3 right) and 0.6 (2 images, 1 right)
    probs = torch.tensor([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    labels = torch.tensor([0, 0, 0, 1, 0, 1])
    expected = 4 / 6 * abs(0.75 - 0.9) + 2 / 6 * abs(0.5 - 0.6)
    assert expected_calibration_error(probs, labels) == pytest.approx(expected, abs=1e-7)  # 0.9 in float32
    assert nll(probs, labels) == pytest.approx(-(3 * math.log(0.9) + math.log(0.1) + math.log(0.6) + math.log(0.4)) / 6)


def test_the_fitted_temperature_minimises_the_nll_and_keeps_every_answer():
    torch.manual_seed(0)
    logits = torch.randn(3000, 10) * 4
    labels = torch.where(torch.rand(3000) < 0.7, logits.argmax(1), torch.randint(0, 10, (3000,)))  # over-confident
    probs = torch.softmax(logits, 1)
    t = fit_temperature(probs, labels)
    grid = torch.linspace(0.5, 8, 3001)
    best = grid[torch.stack([torch.nn.functional.cross_entropy(logits / g, labels) for g in grid]).argmin()]
    assert t == pytest.approx(best.item(), abs=3e-3) and t > 1  # softened: the model was over-confident
    calibrated = apply_temperature(probs, t)
    assert torch.equal(calibrated.argmax(1), probs.argmax(1))
    report = calibration_report(probs, labels, t)
    assert report["nll_calibrated"] < report["nll"] and report["temperature"] == t


@pytest.mark.slow
def test_train_json_reports_valid_and_test_accuracy_and_predict_uses_the_temperature(tmp_path):
    proc = digitlab("train", "--task", "digits", "--model", "linear", "--epochs", "1", "--lr", "0.1", "--device",
                    "cpu", "--name", "d", "--json", cwd=tmp_path)
    s = json.loads(proc.stdout)
    assert s["n_valid"] == 5000 and s["n_test"] == 10000 and s["accuracy"] == s["test_accuracy"]
    assert {"valid_accuracy", "test_accuracy", "ece", "ece_calibrated", "nll", "temperature"} <= set(s)
    clf = Classifier.load(tmp_path / "runs" / "d")
    assert clf.temperature == pytest.approx(s["temperature"]) and clf.temperature != 1.0
    x = load_task("digits").test.images[:50].float() / 255
    raw = torch.softmax(clf.model(x.unsqueeze(1)), 1)
    assert torch.allclose(clf.predict_inputs(x), apply_temperature(raw, clf.temperature), atol=1e-6)
    listed = json.loads(digitlab("runs", "--json", cwd=tmp_path).stdout)[0]
    assert listed["test_accuracy"] == s["test_accuracy"] and listed["valid_accuracy"] == s["valid_accuracy"]
    assert (tmp_path / "runs" / "d" / "plots" / "reliability.png").stat().st_size > 5000


@pytest.mark.slow
def test_a_learner_run_without_a_validation_split_trains_on_every_image_and_is_tested(tmp_path):
    """valid_size 0 on the Learner engine (a final model, or the shipped one's recipe on the Learner): it used to
    be refused with "the data set is empty" by the validation loader, and then its curves figure failed."""
    proc = digitlab("train", "--model", "linear", "--epochs", "1", "--valid-size", "0", "--engine", "learner",
                    "--device", "cpu", "--name", "all", "--json", cwd=tmp_path)
    s = json.loads(proc.stdout)
    assert s["status"] == "finished" and s["n_valid"] == 0 and s["valid_accuracy"] is None
    assert s["n_test"] == 10000 and s["test_accuracy"] > 0.8 and s["temperature"] == 1.0
    run = tmp_path / "runs" / "all"
    assert (run / "plots" / "curves.png").stat().st_size > 5000 and (run / "report.html").exists()
