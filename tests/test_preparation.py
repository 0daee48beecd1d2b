"""Train and predict see the same picture (issue 30): a model trained on an image folder saves how its training
images were read, and `digitlab predict` on the held-out files, and /api/predict of a running server, give exactly
the labels the model gives the same images as training's loader read them (what `evaluate` scores). Five kinds of
data: MNIST's IDX files, Fashion-MNIST's, and three kinds of folder: dark shapes on light paper (the case that used
to fail: predict inverted them), light on dark, and colour pictures of mixed sizes. Also: the answer's words fit the
model ("not a digit", "not one of these classes"), a folder in ImageFolder's layout given to predict, and an old
model file without the metadata (the old rule, and one note)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import HANG_S
from test_cli import digitlab
from test_datasets import fashion_folder
from test_serve import start, stop

from digitlab.data import preparation
from digitlab.data.images import in_mnist_form
from digitlab.data.tasks import load_task
from digitlab.inference import class_probs
from digitlab.predict import Classifier
from digitlab.weights import load_model_and_extras, read_weights, save_model

SHAPES = ("bar", "cross", "ring", "wedge")
SHIPPED = Path(__file__).resolve().parent.parent / "src" / "digitlab" / "pretrained" / "digits-cnn.safetensors"


def draw(shape: str, rng: np.random.Generator, kind: str) -> Image.Image:
    """One picture of `shape` at a random place, size and stroke: ink and paper as the kind says."""
    size = int(rng.integers(24, 72)) if kind == "colour" else 28
    paper, ink = {"dark_on_light": ((235,) * 3, (20,) * 3), "light_on_dark": ((10,) * 3, (240,) * 3),
                  "colour": (tuple(int(v) for v in rng.integers(150, 255, 3)),
                             tuple(int(v) for v in rng.integers(0, 90, 3)))}[kind]
    img = Image.new("RGB", (size, size), paper)
    d = ImageDraw.Draw(img)
    c, r, w = size / 2 + rng.uniform(-size / 8, size / 8, 2), size * rng.uniform(0.25, 0.4), max(1, round(size / 12))
    box = [c[0] - r, c[1] - r, c[0] + r, c[1] + r]
    if shape == "bar":
        d.line([c[0], c[1] - r, c[0], c[1] + r], fill=ink, width=w)
    elif shape == "cross":
        d.line([box[0], box[1], box[2], box[3]], fill=ink, width=w)
        d.line([box[0], box[3], box[2], box[1]], fill=ink, width=w)
    elif shape == "ring":
        d.ellipse(box, outline=ink, width=w)
    else:
        d.polygon([(box[0], box[3]), (c[0], box[1]), (box[2], box[3])], outline=ink, width=w)
    return img


def make_folder(root, kind: str, per_class=(40, 12), seed=0):
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "valid"), per_class):
        for shape in SHAPES:
            (root / split / shape).mkdir(parents=True)
            for i in range(n):
                draw(shape, rng, kind).save(root / split / shape / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module", params=["dark_on_light", "light_on_dark", "colour"])
def trained(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    root = make_folder(tmp / "data", request.param)
    digitlab("train", "--data", root, "--model", "cnn", "--epochs", "4", "--bs", "32", "--lr", "0.05", "-q",
             "--runs", tmp, "--name", "run", tmp_path=tmp)
    return request.param, root, tmp / "run"


def in_loader_order(root, data) -> list[Path]:
    """The held-out files in the order of the loader's test split (each class's files in name order, the classes
    interleaved as the loader lays them out)."""
    left = {c: sorted((root / "valid" / c).glob("*.png")) for c in data.classes}
    return [left[data.classes[y]].pop(0) for y in data.test.labels.tolist()]


def loader_labels(run, root) -> dict[Path, str]:
    """What the model says of each held-out file as training's loader read it (evaluate's view)."""
    clf, data = Classifier.load(run), load_task("digits", root)
    preds = class_probs(clf.model, data.test.images).argmax(1).tolist()
    return {f: clf.classes[i] for f, i in zip(in_loader_order(root, data), preds)}


@pytest.mark.slow
def test_predict_and_the_server_agree_with_the_loader_on_every_held_out_file(trained, tmp_path):
    kind, root, run = trained
    meta = read_weights(run / "model.safetensors")[1]
    assert meta["preparation"] == {"kind": "folder", "ink": "light_on_dark" if kind == "light_on_dark"
                                   else "dark_on_light"}
    by_file = loader_labels(run, root)
    files = sorted((root / "valid").rglob("*.png"))
    expected = [by_file[f] for f in files]
    assert np.mean([e == f.parent.name for e, f in zip(expected, files)]) > 0.5  # it learned something (chance 0.25)
    out = json.loads(digitlab("predict", run, root / "valid", "--json", tmp_path=tmp_path).stdout)
    assert [Path(o["image"]) for o in out] == files  # the images in the class folders
    assert [o["label"] for o in out] == expected
    # named classes: the model's own words, never "not a digit"
    assert all("not_a_digit" not in o and o["verdict"] == ("not one of these classes" if o["none_of_the_classes"]
                                                           else o["label"]) for o in out)
    proc, url = start(run, tmp_path=tmp_path)
    try:
        served = [httpx.post(url + "/api/predict", files={"file": (f.name, f.read_bytes(), "image/png")},
                             timeout=HANG_S).json()["label"] for f in files]
    finally:
        stop(proc)
    assert served == expected


def test_dark_on_light_training_images_are_read_as_they_are_not_inverted(tmp_path):
    """The bug of issue 30: a folder of dark ink on light paper was trained as it is, but predict inverted each
    picture whose border was light. The saved preparation reads it exactly as the loader did."""
    root = make_folder(tmp_path / "data", "dark_on_light", per_class=(5, 3))
    data = load_task("digits", root)
    assert data.prep == {"kind": "folder", "ink": "dark_on_light"}
    files = in_loader_order(root, data)
    read = torch.stack([preparation.prepare(data.prep, f) for f in files])
    assert torch.equal((read * 255).round().to(torch.uint8), data.test.images)  # the loader's bytes, file for file
    for f in files[:3]:  # the same through bytes, a PIL image and an array
        want = preparation.prepare(data.prep, f)
        with Image.open(f) as im:
            assert torch.equal(preparation.prepare(data.prep, im), want)
        assert torch.equal(preparation.prepare(data.prep, f.read_bytes()), want)
    light = make_folder(tmp_path / "light", "light_on_dark", per_class=(5, 3))
    assert load_task("digits", light).prep["ink"] == "light_on_dark"


def test_an_old_model_file_predicts_by_the_old_rule_with_one_note(tmp_path, capsys):
    model, meta, extras = load_model_and_extras(SHIPPED)
    old = {k: v for k, v in meta.items() if k != "preparation"}
    save_model(model, tmp_path / "old.safetensors", old, extra=extras)
    clf = Classifier.load(tmp_path / "old.safetensors")
    assert clf.preparation == preparation.HANDWRITING  # digits: MNIST's preparation, as before
    Classifier.load(tmp_path / "old.safetensors")
    err = capsys.readouterr().err
    assert err.count("predates saved input preparations") == 1  # one note per file and process
    assert Classifier.load(SHIPPED).preparation == preparation.HANDWRITING  # the shipped file says so itself
    assert "predates" not in capsys.readouterr().err


def test_predict_reads_a_folder_in_imagefolder_layout(tmp_path):
    root = make_folder(tmp_path / "data", "dark_on_light", per_class=(2, 2))
    out = json.loads(digitlab("predict", SHIPPED, root, "--json", tmp_path=tmp_path).stdout)
    assert len(out) == 2 * 2 * len(SHAPES) and all(o["image"].endswith(".png") for o in out)


N_IDX = 300  # held-out images of each IDX set written as files


@pytest.fixture(scope="module", params=["mnist", "fashion"])
def idx_run(request, tmp_path_factory):
    """A small model trained on a known IDX set (MNIST shipped, Fashion-MNIST from Debian), and its first N_IDX
    test images written as PNG files, as a user would save them."""
    tmp = tmp_path_factory.mktemp(request.param)
    data_args = ("--data", fashion_folder()) if request.param == "fashion" else ()
    digitlab("train", *data_args, "--model", "linear", "--epochs", "1", "-q", "--runs", tmp, "--name", "run",
             tmp_path=tmp)
    data = load_task("digits", fashion_folder() if request.param == "fashion" else None)
    files = tmp / "files"
    files.mkdir()
    for i, x in enumerate(data.test.images[:N_IDX]):
        Image.fromarray(x.numpy()).save(files / f"{i:04d}.png")
    return request.param, tmp / "run", data, files


@pytest.mark.slow
def test_predict_and_the_server_agree_with_evaluate_on_an_idx_sets_own_test_images(idx_run, tmp_path):
    """MNIST's images are already in MNIST's form and read as they are (images.in_mnist_form); Fashion-MNIST's are
    whole objects on black, read as they are: both give exactly the labels evaluate's tensors give."""
    kind, run, data, files = idx_run
    meta = read_weights(run / "model.safetensors")[1]
    assert meta["preparation"] == {"kind": "handwriting" if kind == "mnist" else "whole"}
    clf = Classifier.load(run)
    expected = [clf.classes[i] for i in class_probs(clf.model, data.test.images[:N_IDX]).argmax(1).tolist()]
    if kind == "mnist":
        assert all(in_mnist_form(x.numpy() / 255.0) for x in data.test.images)  # every test image, not only these
    out = json.loads(digitlab("predict", run, files, "--json", tmp_path=tmp_path).stdout)
    assert [Path(o["image"]).name for o in out] == sorted(f.name for f in files.iterdir())
    assert [o["label"] for o in out] == expected
    assert all(("not_a_digit" in o) == (kind == "mnist") and "none_of_the_classes" in o for o in out)
    proc, url = start(run, tmp_path=tmp_path)
    try:
        with httpx.Client(timeout=HANG_S) as client:
            served = [client.post(url + "/api/predict", content=(files / f"{i:04d}.png").read_bytes(),
                                  headers={"content-type": "image/png"}).json()["label"] for i in range(N_IDX)]
    finally:
        stop(proc)
    assert served == expected


@pytest.mark.slow
def test_the_answer_says_not_one_of_these_classes_for_a_model_of_named_classes(idx_run, tmp_path):
    """A model of named classes never answers "not a digit": the CLI, its JSON and the API say "not one of these
    classes" (the detector's threshold set below every score here, so that every image is flagged)."""
    kind, run, _, files = idx_run
    model, meta, extras = load_model_and_extras(run / "model.safetensors")
    meta["ood"]["threshold"] = -1e30
    flagged = save_model(model, tmp_path / "flags-all.safetensors", meta, extra=extras)
    words = "not a digit" if kind == "mnist" else "not one of these classes"
    some = sorted(files.iterdir())[:3]
    out = json.loads(digitlab("predict", flagged, *some, "--json", tmp_path=tmp_path).stdout)
    assert all(o["none_of_the_classes"] and o["verdict"] == words for o in out)
    text = digitlab("predict", flagged, *some, tmp_path=tmp_path).stdout
    assert text.count(words) == 3 and (kind == "mnist") == ("not a digit" in text)
    proc, url = start(flagged, tmp_path=tmp_path)
    try:
        body = httpx.post(url + "/api/predict", content=some[0].read_bytes(), headers={"content-type": "image/png"},
                          timeout=HANG_S).json()
    finally:
        stop(proc)
    assert body["none_of_the_classes"] and body["verdict"] == words and ("not_a_digit" in body) == (kind == "mnist")


def test_only_a_picture_already_in_mnists_form_is_read_as_it_is():
    """MNIST's own images pass through the handwriting preparation unchanged (so `predict` on them agrees with
    `evaluate`); a drawing on light paper, an off-centre digit or a speck in the corner get the whole preparation."""
    from digitlab.data.images import prepare_image

    x = load_task("digits").test.images[0].numpy() / 255.0
    assert in_mnist_form(x) and torch.equal(prepare_image(x), torch.from_numpy(x.astype(np.float32)))
    speck = x.copy()
    speck[0, 0] = 0.2
    moved = np.roll(x, 4, axis=1)
    for other in (1 - x, moved, speck):
        assert not in_mnist_form(other)
    again = prepare_image(moved).numpy()
    assert in_mnist_form(again) and not np.array_equal(again, moved)  # centred again by the preparation
