"""Divergence, untrusted or edited files, bad data sets and determinism: each fault gives a clear message."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from test_cli import digitlab

from digitlab.config import TrainConfig
from digitlab.data.idx import write_idx
from digitlab.data.mnist import SHIPPED_DATA, load_split
from digitlab.data.tasks import load_task
from digitlab.errors import DataError, IdxError
from digitlab.train.callback import Callback
from digitlab.train.checkpoint import CheckpointError, load_checkpoint
from digitlab.train.fit import fit
from digitlab.weights import WeightsError, load_model, save_model

TINY = ["--task", "3v7", "--model", "linear", "--epochs", "2", "--no-augment", "-q"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    digitlab("train", *TINY, "--runs", runs, "--name", "ok")
    return runs / "ok"


@pytest.mark.slow
def test_divergence_stops_with_a_message_and_keeps_the_last_good_weights(tmp_path):
    proc = digitlab("train", "--task", "3v7", "--model", "mlp", "--epochs", "3", "--no-augment", "--schedule",
                    "constant", "--lr", "0.05", "--runs", tmp_path, "--name", "d", "-q", check=False)
    assert proc.returncode == 0  # a sane rate trains
    # a rate that explodes within the first epoch: no checkpoint yet, said so, exit status 3
    proc = digitlab("train", *TINY, "--lr", "1e9", "--schedule", "constant", "--runs", tmp_path, "--name", "nan",
                    check=False)
    assert proc.returncode == 3
    assert "training diverged" in proc.stderr and "epoch 0, step" in proc.stderr and "lr-find" in proc.stderr
    assert "no checkpoint had been written yet" in proc.stderr
    assert json.loads((tmp_path / "nan" / "summary.json").read_text())["status"] == "diverged"


def test_divergence_after_a_good_epoch_keeps_that_epochs_weights(tmp_path):
    class Explode(Callback):  # a real blow-up in epoch 1: the weights are pushed to infinity
        order = 1

        def before_batch(self, learn):
            if learn.training and learn.epoch == 1 and learn.iter == 3:
                with torch.no_grad():
                    for p in learn.model.parameters():
                        p.mul_(float("inf"))

    cfg = TrainConfig(task="3v7", model="linear", epochs=3, augment=False)
    result = fit(cfg, cbs=[Explode()], run_dir=tmp_path)
    assert result.summary["status"] == "diverged" and result.summary["diverged"]["epoch"] == 1
    assert result.summary["diverged"]["kept_checkpoint"] and result.summary["accuracy"] > 0.95
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_resume_with_another_config_is_refused(run, tmp_path):
    shutil.copytree(run, tmp_path / "r")
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    config["config"]["lr"] = 123.0
    (tmp_path / "r" / "config.json").write_text(json.dumps(config))
    proc = digitlab("train", "--resume", tmp_path / "r", check=False)
    assert proc.returncode == 2 and "made with a different config (lr)" in proc.stderr


def test_resume_without_checkpoint_or_run(tmp_path):
    proc = digitlab("train", "--resume", tmp_path, check=False)
    assert proc.returncode == 2 and "not a run folder" in proc.stderr


def test_corrupt_or_edited_checkpoint(run, tmp_path):
    ckpt = tmp_path / "c.safetensors"
    data = bytearray((run / "checkpoint.safetensors").read_bytes())
    ckpt.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(ckpt)
    tensors = load_file(run / "checkpoint.safetensors")
    save_file(tensors, str(ckpt), metadata={"digitlab": json.dumps({"format": "something else"})})
    with pytest.raises(CheckpointError, match="not a digitlab checkpoint"):
        load_checkpoint(ckpt)


def test_weights_for_another_architecture_or_edited(run, tmp_path):
    tensors, meta = load_file(run / "model.safetensors"), None
    from safetensors import safe_open
    with safe_open(str(run / "model.safetensors"), "pt") as fh:
        meta = json.loads(fh.metadata()["digitlab"])
    other = tmp_path / "other.safetensors"
    save_file(tensors, str(other), metadata={"digitlab": json.dumps({**meta, "model": "cnn"})})
    with pytest.raises(WeightsError, match="do not fit model 'cnn'"):
        load_model(other)
    tensors["1.weight"] = torch.zeros(3, 5)
    save_file(tensors, str(other), metadata={"digitlab": json.dumps(meta)})
    with pytest.raises(WeightsError, match="wrong shapes"):
        load_model(other)
    save_file(tensors, str(other), metadata={"digitlab": json.dumps({**meta, "model": "transformer9000"})})
    with pytest.raises(WeightsError, match="does not know"):
        load_model(other)
    save_file(tensors, str(other))
    with pytest.raises(WeightsError, match="no digitlab metadata"):
        load_model(other)


def test_a_pickle_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "model.safetensors"
    bad.write_bytes(pickle.dumps(Evil()))
    proc = digitlab("predict", bad, tmp_path / "x.png", check=False)
    assert proc.returncode == 2 and "not a readable safetensors file" in proc.stderr
    assert not marker.exists()


def test_nan_weights_are_refused(tmp_path):
    from digitlab.models import build_model
    model = build_model("linear", 2)
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    path = save_model(model, tmp_path / "m.safetensors", {"model": "linear", "classes": [3, 7]})
    with pytest.raises(WeightsError, match="NaN or infinity"):
        load_model(path)


def test_same_seed_gives_identical_metrics_and_weights():
    cfg = TrainConfig(task="3v7", model="mlp", epochs=1, bs=256, augment=True)
    a, b = fit(cfg), fit(cfg)
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]
    assert a.batch_losses == b.batch_losses
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)


def folder_dataset(root, train_labels=(3, 7), valid_labels=(3, 7), n=4):
    for split, labels in (("train", train_labels), ("valid", valid_labels)):
        for label in labels:
            (root / split / str(label)).mkdir(parents=True)
            for i in range(n):
                Image.new("L", (28, 28), color=30 * i).save(root / split / str(label) / f"{i}.png")
    return root


def test_image_folder_datasets_train_and_bad_ones_are_explained(tmp_path):
    data = load_task("3v7", folder_dataset(tmp_path / "ok"))
    assert len(data.train) == 8 and data.classes == (3, 7)
    with pytest.raises(DataError, match=r"labels \[5\] are outside this task's classes \[3, 7\]"):
        load_task("3v7", folder_dataset(tmp_path / "extra", train_labels=(3, 5, 7)))
    with pytest.raises(DataError, match="single class"):
        load_task("3v7", folder_dataset(tmp_path / "one", train_labels=(3,)))
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "valid").mkdir()
    with pytest.raises(DataError, match="no label folders"):
        load_task("digits", tmp_path / "empty")


def test_idx_images_of_the_wrong_size(tmp_path):
    for f in SHIPPED_DATA.glob("t10k*.gz"):
        shutil.copy(f, tmp_path / f.name)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10000, 32, 32), np.uint8))
    with pytest.raises(IdxError, match=r"images have shape \(10000, 32, 32\), expected \(N, 28, 28\)"):
        load_split("valid", tmp_path, verify=False)


def test_labels_outside_0_to_9(tmp_path):
    for f in SHIPPED_DATA.glob("t10k*.gz"):
        shutil.copy(f, tmp_path / f.name)
    labels = np.zeros(10000, np.uint8)
    labels[5] = 12
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(IdxError, match="label 12 is outside 0-9"):
        load_split("valid", tmp_path, verify=False)
