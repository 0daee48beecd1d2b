"""The catalogue of IDX data sets: MNIST and Fashion-MNIST recognised by their sha256, with their class names and
statistics; any other set accepted with a note; a corrupt MNIST file still refused; class names through every
layer above the data (config, summary, report, evaluate, predict, ONNX metadata)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import HANG_S
import torch
from PIL import Image
from ci_mode import in_ci, missing
from test_idx import copy_mnist
from test_serve import start, stop

from digitlab.config import TrainConfig
from digitlab.data.catalogue import FASHION_MNIST_CLASSES, load_dataset
from digitlab.data.idx import read_idx, write_idx
from digitlab.data.mnist import SHIPPED_DATA
from digitlab.data.tasks import load_task, parse_classes
from digitlab.errors import ChecksumError, ConfigError
from digitlab.predict import Classifier
from digitlab.runs import train_run

FASHION = Path("/usr/share/datasets/fashion-mnist")


def fashion_folder(root: Path = FASHION) -> Path:
    """Debian's dataset-fashion-mnist (`make datasets`): skipped where it is missing, a failure under CI."""
    if not (root / "train-images-idx3-ubyte.gz").exists():
        missing(f"needs {root} (apt-get install dataset-fashion-mnist, or `make datasets`)")
    return root


@pytest.fixture(scope="module")
def fashion():
    return fashion_folder()


@pytest.mark.parametrize("value, ci", [("true", True), ("1", True), ("yes", True), ("TRUE", True),
                                       ("", False), ("0", False), ("false", False), ("No", False)])
def test_ci_is_read_one_way_and_a_missing_set_fails_under_it(monkeypatch, tmp_path, value, ci):
    """ci_mode's one rule, as every test that needs an installed set or browser reads it (CI=1 fails too)."""
    monkeypatch.setenv("CI", value)
    assert in_ci() is ci
    with pytest.raises(pytest.fail.Exception if ci else pytest.skip.Exception, match="dataset-fashion-mnist"):
        fashion_folder(tmp_path)


def pixel_stats_of(path: Path) -> tuple[float, float]:
    """Mean and standard deviation of an IDX images file scaled to [0, 1], from its pixel counts (float64)."""
    counts = np.bincount(read_idx(path).numpy().ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256) / 255
    mean = (counts * levels).sum() / counts.sum()
    return float(mean), float(np.sqrt((counts * (levels - mean) ** 2).sum() / counts.sum()))


def test_the_shipped_mnist_is_recognised_with_its_digits_and_statistics():
    ds = load_dataset()
    assert ds.name == "MNIST" and ds.classes == tuple(range(10))
    mean, std = pixel_stats_of(SHIPPED_DATA / "train-images-idx3-ubyte.gz")
    assert (ds.mean, ds.std) == (round(mean, 4), round(std, 4))  # the catalogue's figures are the images'
    assert len(ds.splits["train"]) == 60000 and len(ds.sha256) == 4


def test_fashion_mnist_is_recognised_with_its_names_and_statistics(fashion):
    ds = load_dataset(fashion)
    assert ds.name == "Fashion-MNIST" and ds.classes == FASHION_MNIST_CLASSES and ds.classes[7] == "Sneaker"
    mean, std = pixel_stats_of(fashion / "train-images-idx3-ubyte.gz")  # measured here, not a copy of the literals
    assert (ds.mean, ds.std) == (round(mean, 4), round(std, 4))
    data = load_task("digits", fashion)  # the default task: every class of the data set
    assert data.classes == FASHION_MNIST_CLASSES and len(data.test) == 10000 and (data.mean, data.std) == (ds.mean, ds.std)


def test_classes_picks_a_subset_by_name_or_number(fashion):
    data = load_task("digits", fashion, classes="Sneaker, Bag")
    assert data.classes == ("Sneaker", "Bag") and len(data.test) == 2000 and set(data.test.labels.tolist()) == {0, 1}
    assert len(data.valid) == 1000  # two of ten classes hold out their share of the 5000
    assert load_task("digits", None, classes="3,5,8").classes == (3, 5, 8)
    assert load_task("3v7").classes == (3, 7)
    with pytest.raises(ConfigError, match="Fashion-MNIST has no class 'Sneakers'; pick from its classes"):
        load_task("digits", fashion, classes="Sneakers,Bag")
    with pytest.raises(ConfigError, match="--task 3v7 is MNIST's 3s and 7s"):
        load_task("3v7", fashion)
    assert parse_classes("Ankle boot,7") == ("Ankle boot", 7)
    with pytest.raises(ConfigError, match="at least two"):
        TrainConfig(classes="Bag")


def test_a_corrupt_mnist_file_is_still_refused_with_mnists_message(tmp_path, isolated_cache):
    root = copy_mnist(tmp_path / "m")
    labels = read_idx(root / "t10k-labels-idx1-ubyte.gz")
    labels[0] = 3
    write_idx(root / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch.*restore it"):
        load_dataset(root)
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        load_task("digits", root)


def test_an_unknown_idx_set_is_accepted_with_a_note_and_its_checksums(tmp_path, isolated_cache, capsys):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 300), ("t10k", 100)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 4)
    ds = load_dataset(tmp_path)
    assert ds.name == "unknown" and ds.classes == (0, 1, 2, 3) and abs(ds.mean - 0.5) < 0.01
    assert len(ds.sha256["train-images-idx3-ubyte"]) == 64
    err = capsys.readouterr().err
    assert "is not a known data set" in err and "sha256" in err and len(err.strip().splitlines()) == 1
    data = load_task("digits", tmp_path, valid_size=40)
    assert data.info["sha256"] == ds.sha256 and len(data.valid) == 40


@pytest.mark.slow
def test_a_named_data_set_flows_through_run_evaluate_predict_and_export(fashion, tmp_path):
    cfg = TrainConfig(model="linear", epochs=1, data=str(fashion), classes="Sneaker,Bag,Ankle boot", augment=False)
    run, result = train_run(cfg, tmp_path / "runs", "fashion", plots=True)
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["classes"] == "Sneaker,Bag,Ankle boot"
    assert config["dataset"]["name"] == "Fashion-MNIST" and len(config["dataset"]["sha256"]) == 4
    assert json.loads((run / "summary.json").read_text())["classes"] == ["Sneaker", "Bag", "Ankle boot"]
    interp = json.loads((run / "interpretation.json").read_text())
    assert set(interp["per_class_accuracy"]) == {"Sneaker", "Bag", "Ankle boot"}
    report = (run / "report.html").read_text()
    assert "Accuracy per class" in report and "Fashion-MNIST" in report
    assert result.summary["test_accuracy"] > 0.9
    # predict: a Sneaker of the test set, written as a PNG the way a user would have it
    test = load_dataset(fashion).splits["valid"]
    sneaker = test.images[test.labels == 7][0].numpy()
    Image.fromarray(sneaker).save(tmp_path / "sneaker.png")
    clf = Classifier.load(run)
    assert clf.predict([tmp_path / "sneaker.png"])[0].to_dict()["label"] == "Sneaker"
    env = {**os.environ, "COLUMNS": "200"}
    cli = [sys.executable, "-m", "digitlab"]
    proc = subprocess.run(cli + ["predict", str(run), str(tmp_path / "sneaker.png"), "--json"], capture_output=True,
                          text=True, env=env, timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["label"] == "Sneaker"
    proc = subprocess.run(cli + ["evaluate", str(run), "--json"], capture_output=True, text=True, env=env, timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr
    scored = json.loads(proc.stdout)
    assert scored["dataset"] == "Fashion-MNIST" and scored["classes"] == ["Sneaker", "Bag", "Ankle boot"]
    assert scored["accuracy"] == pytest.approx(result.summary["test_accuracy"], abs=1e-6)
    proc, url = start(run, tmp_path=tmp_path)  # the web API answers with the names too
    try:
        card = httpx.get(url + "/api/model").json()
        assert card["classes"] == ["Sneaker", "Bag", "Ankle boot"] and "Fashion-MNIST" in card["training_data"]
        answer = httpx.post(url + "/api/predict", content=(tmp_path / "sneaker.png").read_bytes(),
                            headers={"content-type": "image/png"}).json()
        assert answer["label"] == "Sneaker" and set(answer["probabilities"]) == {"Sneaker", "Bag", "Ankle boot"}
    finally:
        stop(proc)


@pytest.mark.slow
def test_the_onnx_export_carries_class_names(fashion, tmp_path):
    onnx = pytest.importorskip("onnx")
    from digitlab.export import export_model  # deferred: pulls in the exporter only where onnx is installed

    cfg = TrainConfig(model="linear", epochs=1, data=str(fashion), classes="Trouser,Dress", augment=False)
    run, _ = train_run(cfg, tmp_path / "runs", "pair", plots=False)
    images = load_task("digits", fashion, classes="Trouser,Dress").test.images[:200].float() / 255
    path, check = export_model(run, "onnx", tmp_path / "m.onnx", images)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["classes"]) == ["Trouser", "Dress"] and check["same_labels"] == 1.0
    assert torch.is_tensor(images)
