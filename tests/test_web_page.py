"""The page without a server (`digitlab export --format web`): exported by the real CLI, served by `python -m
http.server` (and by `digitlab serve --page`), opened in Debian's chromium with every request that leaves the
server aborted, so the page works offline. It must answer what `digitlab predict` answers: on a few hundred
varied pictures (tests/drawings.py) the same labels, the same "not a digit", probabilities within 1e-4 and the
same 28x28 inputs; and as the served page does: a drawn 7 is 7, a drawn triangle is not a digit, a cleared
canvas is blank, class names for a model of named classes."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import HANG_S
from drawings import pictures
from test_browser import ARGS, CHROMIUM, drawer, require_chromium
from conftest import run_env
from test_serve import start, stop

from digitlab.export import ExportError
from digitlab.models.registry import build_model
from digitlab.predict import Classifier
from digitlab.runs import shipped_model_file
from digitlab.webpage import MODEL_MARK, ORT_FILES, export_page, page_source
from digitlab.weights import save_model

PROB_TOLERANCE = 1e-4   # the bar for probabilities (ONNX Runtime Web against PyTorch)
INPUT_TOLERANCE = 1e-6  # prepare.js against Python: equal to the bit on every picture measured; 1e-6 leaves room
                        # for a last-bit difference in a browser's Math.sin (Lanczos weights)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The shipped model exported as a page by the CLI, as a user does it."""
    folder = tmp_path_factory.mktemp("web") / "page"
    done = subprocess.run([sys.executable, "-m", "digitlab", "export", "--format", "web", str(folder)],
                          capture_output=True, text=True, env=run_env(), timeout=HANG_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "same label as the original on 100.0%" in done.stdout
    return folder


def static_server(folder):
    """`python -m http.server` on a free port, serving folder: (process, base url)."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "-d",
                             str(folder)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    m = re.search(r"port (\d+)", proc.stdout.readline())
    assert m, "http.server printed no port"
    return proc, f"http://127.0.0.1:{m.group(1)}"


def offline_page(pw, url: str):
    """(browser, page, refused): chromium on url with every request elsewhere aborted (and listed in refused),
    once the page has loaded its model."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    context = browser.new_context(viewport={"width": 900, "height": 640})
    refused = []

    def only_local(route):
        if route.request.url.startswith(url):
            return route.continue_()
        refused.append(route.request.url)
        return route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.locator("#model-info", has_text="accuracy").wait_for(timeout=HANG_S * 1000)
    assert not errors, errors
    return browser, page, refused


def page_answers(page, names: list[str]) -> list[dict]:
    """The page's own answer for each picture file (a URL relative to the page), as it computes it."""
    return page.evaluate("""async (names) => {
        const out = [];
        for (const name of names) {
            const r = await window.digitlab.predict(name);
            const b = r.body;
            out.push({status: r.status, label: b.label, verdict: b.verdict, flagged: b.none_of_the_classes,
                      probabilities: b.probabilities, ood_score: b.ood_score,
                      prepared: b.prepared ? Array.from(b.prepared) : null});
        }
        return out;
    }""", names)


@pytest.mark.slow
def test_the_page_answers_what_predict_answers_on_300_varied_pictures_offline(page, tmp_path):
    """The issue's bar: every picture the same label and the same "not a digit" as `digitlab predict`, the
    probabilities within 1e-4, the 28x28 input within 1e-6; blank pictures blank on both."""
    require_chromium()
    from playwright.sync_api import sync_playwright  # deferred: only once the browser is known to be there

    check = page / "check"
    check.mkdir()
    kinds = {}
    for i, (kind, picture) in enumerate(pictures()):
        picture.save(check / f"{i:03d}.png")
        kinds[f"{i:03d}.png"] = kind
    names = sorted(kinds)
    assert len(names) >= 300
    done = subprocess.run([sys.executable, "-m", "digitlab", "predict", "--json", str(shipped_model_file()), str(check)],
                          capture_output=True, text=True, env=run_env(), timeout=HANG_S)
    assert done.returncode == 0, done.stderr[-2000:]
    python = {o["image"].rsplit("/", 1)[-1]: o for o in json.loads(done.stdout)}
    clf = Classifier.load(shipped_model_file())
    server, url = static_server(page)
    try:
        with sync_playwright() as pw:
            browser, tab, refused = offline_page(pw, url)
            answers = page_answers(tab, [f"check/{n}" for n in names])
            browser.close()
    finally:
        stop(server)
    assert not refused, f"the page asked for something beyond its own folder: {refused[:3]}"
    worst_p = worst_x = 0.0
    for name, got in zip(names, answers):
        want, kind = python[name], kinds[name]
        if want.get("blank"):
            assert got["status"] == 422, f"{name} ({kind}): blank to predict, {got['label']} on the page"
            continue
        assert got["status"] == 200, f"{name} ({kind}): {want['label']} to predict, {got} on the page"
        assert got["label"] == want["label"] and got["flagged"] == want["none_of_the_classes"], (name, kind)
        assert got["verdict"] == want["verdict"], (name, kind)
        worst_p = max(worst_p, max(abs(got["probabilities"][k] - v) for k, v in want["probabilities"].items()))
        x = clf.prepare(check / name).numpy().ravel()
        worst_x = max(worst_x, float(np.abs(np.array(got["prepared"], np.float32) - x).max()))
    print(f"{len(names)} pictures: largest probability difference {worst_p:.2e}, largest input difference "
          f"{worst_x:.2e}; kinds {sorted(set(kinds.values()))}")
    assert worst_p <= PROB_TOLERANCE and worst_x <= INPUT_TOLERANCE
    assert sum(python[n].get("blank", False) for n in names) >= 3  # the blank pictures were really tried
    assert sum(bool(python[n].get("none_of_the_classes")) for n in names) >= 50  # and many non-digits


@pytest.mark.slow
def test_drawn_on_the_exported_page_a_seven_is_seven_a_triangle_not_a_digit_and_a_cleared_canvas_blank(page):
    require_chromium()
    from playwright.sync_api import sync_playwright  # deferred: only once the browser is known to be there

    server, url = static_server(page)
    try:
        with sync_playwright() as pw:
            browser, tab, refused = offline_page(pw, url)
            assert "runs the model itself" in tab.text_content("#footer")
            stroke = drawer(tab)
            stroke([(70, 60), (210, 60)])
            stroke([(210, 60), (130, 240)])
            tab.wait_for_selector("#label[data-state=ok]", timeout=10000)
            assert tab.text_content("#label") == "7"
            assert tab.locator("#bars li.top").get_attribute("data-digit") == "7"
            tab.click("#clear")
            assert tab.get_attribute("#label", "data-state") == "empty"
            blank = tab.evaluate("async () => (await window.digitlab.predict("
                                 "document.getElementById('pad').getContext('2d').getImageData(0, 0, 280, 280))).status")
            assert blank == 422  # a cleared canvas is blank: no digit, not a guess
            stroke([(140, 50), (235, 220), (45, 220), (140, 50)])  # a triangle, as test_browser draws it
            tab.wait_for_selector("#label[data-state=not-digit]", timeout=10000)
            assert tab.text_content("#label") == "not a digit"
            browser.close()
    finally:
        stop(server)
    assert not refused


@pytest.mark.slow
def test_digitlab_serve_serves_the_exported_page_which_answers_without_the_api(page, tmp_path):
    require_chromium()
    from playwright.sync_api import sync_playwright  # deferred: only once the browser is known to be there

    proc, url = start("--page", page, tmp_path=tmp_path)
    try:
        with sync_playwright() as pw:
            browser, tab, refused = offline_page(pw, url)
            posts = []
            tab.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
            stroke = drawer(tab)
            stroke([(70, 60), (210, 60)])
            stroke([(210, 60), (130, 240)])
            tab.wait_for_selector("#label[data-state=ok]", timeout=10000)
            assert tab.text_content("#label") == "7"
            browser.close()
    finally:
        stop(proc)
    assert not refused and not posts, posts  # answered by the page itself, not by POST /api/predict


@pytest.mark.slow
def test_a_page_for_named_classes_shows_their_names(tmp_path):
    """A model of named classes (Fashion-MNIST's) keeps its words on the page: its class names on the bars, and
    its own preparation (whole objects) from model.json."""
    require_chromium()
    from playwright.sync_api import sync_playwright  # deferred: only once the browser is known to be there

    names = ["T-shirt/top", "Trouser", "Sneaker"]
    torch.manual_seed(0)
    src = save_model(build_model("fastcnn", 3).eval(), tmp_path / "run" / "model.safetensors",
                     {"model": "fastcnn", "classes": names, "task": "fashion", "preparation": {"kind": "whole"}})
    folder, spec = export_page(src, tmp_path / "page")
    assert spec["preparation"] == {"kind": "whole"} and spec["verdict"] == "not one of these classes"
    server, url = static_server(folder)
    try:
        with sync_playwright() as pw:
            browser, tab, refused = offline_page(pw, url)
            assert [tab.text_content(f"#bars li:nth-child({i + 1}) .name") for i in range(3)] == names
            stroke = drawer(tab)
            stroke([(80, 80), (200, 200)])
            tab.wait_for_selector("#label[data-state=ok]", timeout=10000)
            assert tab.text_content("#label") in names
            browser.close()
    finally:
        stop(server)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["fastcnn", "cnn", "resnet18"])
def test_every_model_digitlab_exports_to_onnx_becomes_a_page(tmp_path, arch):
    torch.manual_seed(0)
    src = save_model(build_model(arch, 10).eval(), tmp_path / "run" / "model.safetensors",
                     {"model": arch, "classes": list(range(10)), "task": "digits", "preparation": {"kind": "handwriting"}})
    folder, spec = export_page(src, tmp_path / "page")
    assert spec["check"]["same_labels"] == 1.0 and spec["card"]["architecture"] == arch
    assert (folder / "model" / "model.onnx").stat().st_size == spec["onnx_bytes"]
    assert MODEL_MARK not in (folder / "index.html").read_text()  # switched to the page's own model


def test_a_model_too_large_for_a_page_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(ExportError, match=r"MB a page should load .* smaller model"):
        export_page(None, tmp_path / "page", max_model_bytes=100_000)
    assert not (tmp_path / "page").exists() and list(tmp_path.iterdir()) == []  # no half-written folder either


def test_a_folder_that_is_not_a_page_is_never_overwritten(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an earlier page export"):
        export_page(None, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"


def test_the_shipped_runtime_is_the_pinned_npm_release_unchanged():
    """ONNX Runtime Web's files in the package are the ones vendor.json names (Makefile: make vendor-ort)."""
    ort = page_source() / "ort"
    vendor = json.loads((ort / "vendor.json").read_text())
    for name, digest in vendor["sha256"].items():
        assert hashlib.sha256((ort / name).read_bytes()).hexdigest() == digest, name
    assert set(vendor["sha256"]) | {"LICENSE", "vendor.json"} == set(ORT_FILES)
    assert vendor["version"] in (ort / "LICENSE").read_text() and "MIT License" in (ort / "LICENSE").read_text()
    assert MODEL_MARK in (page_source() / "index.html").read_text()
