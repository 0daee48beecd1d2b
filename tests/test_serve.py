"""`digitlab serve` as a user runs it: a real server process on a free loopback port, spoken to over HTTP.
Every route, and every kind of bad input: the server answers each with a clear JSON error and keeps running."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import HANG_S, run_env
from digitlab.cli import main
from digitlab.data import load_mnist


def start(*args, tmp_path=None):
    """Start `python -m digitlab serve ... --port 0`; return (process, base url) once it answers /api/health."""
    env = run_env(tmp_path)
    if tmp_path is not None:  # uploads must never be spooled to disk: give the server an empty TMPDIR to watch
        (tmp_path / "tmp").mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmp_path / "tmp")
    proc = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", *map(str, args), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path)
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    assert m, f"no address printed: {line!r} exit {proc.poll()}"
    url = f"http://127.0.0.1:{m.group(1)}"
    for _ in range(100):
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not come up")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def children(pid: int) -> list[int]:
    return [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an exited child waiting for its parent to read its status)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_server_leaves_no_worker_processes_behind(tmp_path, sig):
    """The decoder workers (serve/inputs.py) end with the server, even one killed outright: they used to live on,
    ~170 MB each, until leaked servers' workers filled the machine's memory."""
    proc, _ = start(tmp_path=tmp_path)
    workers = children(proc.pid)
    assert len(workers) >= 2, workers  # the two decoders (and multiprocessing's resource tracker)
    proc.send_signal(sig)
    proc.wait(HANG_S)
    # the workers look for their server every 0.5 s: a minute is a hang guard for any machine, not a time bar
    deadline = time.monotonic() + 60
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(alive, workers)), [w for w in workers if alive(w)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The shipped model, served from an empty working folder whose TMPDIR must stay empty."""
    tmp = tmp_path_factory.mktemp("serve")
    proc, url = start(tmp_path=tmp)
    yield url, tmp
    stop(proc)
    assert proc.returncode in (0, -15)


@pytest.fixture(scope="module")
def digits():
    valid = load_mnist()["valid"]
    return valid.images[:20].numpy(), valid.labels[:20].tolist()


def png(arr: np.ndarray, fmt="PNG", side=280, invert=True) -> bytes:
    im = Image.fromarray(255 - arr if invert else arr).resize((side, side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.convert("RGB").save(buf, fmt)
    return buf.getvalue()


def test_health_model_openapi_and_page(server):
    url, _ = server
    h = httpx.get(url + "/api/health").json()
    assert h["status"] == "ok" and h["model"] == "fastcnn"
    m = httpx.get(url + "/api/model").json()
    assert m["architecture"] == "fastcnn" and m["classes"] == list(range(10)) and m["task"] == "digits"
    assert m["test_accuracy"] > 0.98 and m["trained"].startswith("20") and "MNIST" in m["training_data"]
    spec = httpx.get(url + "/openapi.json").json()
    assert {"/api/predict", "/api/model", "/api/health"} <= set(spec["paths"])
    assert {"application/json", "multipart/form-data"} <= set(spec["paths"]["/api/predict"]["post"]["requestBody"]["content"])
    assert httpx.get(url + "/docs").status_code == 200
    page = httpx.get(url + "/")
    assert page.status_code == 200 and '<canvas id="pad"' in page.text and "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in (("app.js", "javascript"), ("style.css", "css")):
        r = httpx.get(f"{url}/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert httpx.get(url + "/static/../../etc/passwd").status_code == 404
    nf = httpx.get(url + "/nope")
    assert nf.status_code == 404 and nf.json()["error"] == "not_found"
    assert httpx.get(url + "/api/predict").status_code == 405


def test_predict_json_pixels_both_scales(server, digits):
    url, _ = server
    images, labels = digits
    right = flagged = 0
    for img, label in zip(images, labels):
        r = httpx.post(url + "/api/predict", json={"pixels": img.tolist()})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"label", "probabilities", "input", "not_a_digit", "none_of_the_classes", "verdict",
                             "ood_score"}
        assert body["none_of_the_classes"] == body["not_a_digit"]
        assert body["verdict"] == ("not a digit" if body["not_a_digit"] else str(body["label"]))
        assert isinstance(body["not_a_digit"], bool) and (body["ood_score"] is None or isinstance(body["ood_score"], float))
        flagged += body["not_a_digit"]
        assert abs(sum(body["probabilities"].values()) - 1) < 1e-3 and len(body["input"]) == 28
        right += body["label"] == label
    assert right >= 19 and flagged <= 1  # the shipped model's detector accepts 99% of validation digits
    scaled = httpx.post(url + "/api/predict", json={"pixels": (images[0] / 255).tolist()}).json()
    assert scaled["label"] == labels[0]


def test_predict_image_files(server, digits):
    url, _ = server
    images, labels = digits
    for fmt, mime in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")):
        data = png(images[0], fmt)
        r = httpx.post(url + "/api/predict", files={"file": (f"d.{fmt.lower()}", data, mime)})
        assert r.status_code == 200 and r.json()["label"] == labels[0], (fmt, r.text)
        raw = httpx.post(url + "/api/predict", content=data, headers={"content-type": mime})
        assert raw.status_code == 200 and raw.json()["label"] == labels[0]


SHIPPED = Path(__file__).parents[1] / "src" / "digitlab" / "pretrained" / "digits-cnn.safetensors"


def detector_model(folder: Path) -> Path:
    """A copy of the shipped model with the default "not a digit" detector attached, as `digitlab ood-fit` adds
    it (statistics from 3000 training images, to be quick)."""
    from digitlab.assess import attach_detector  # deferred: only the tests of the detector need it

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.safetensors"
    path.write_bytes(SHIPPED.read_bytes())
    return attach_detector(path, fit_images=3000)[0]


def drawing(kind: str) -> bytes:
    """A PNG of black strokes on white, as the page sends a drawing: a filled square, a horizontal zig-zag."""
    im = Image.new("RGB", (280, 280), "white")
    d = ImageDraw.Draw(im)
    if kind == "square":
        d.rectangle([70, 70, 210, 210], fill="black")
    else:
        d.line([(30, 140), (70, 90), (110, 190), (150, 90), (190, 190), (250, 90)], fill="black", width=18)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.slow
def test_the_api_says_not_a_digit_with_a_model_that_has_a_detector(tmp_path, digits):
    model = detector_model(tmp_path / "run")
    proc, url = start(model, tmp_path=tmp_path)
    try:
        card = httpx.get(url + "/api/model").json()
        assert card["ood"]["detector"] == "mahalanobis" and card["ood"]["threshold_on"] == "valid"
        for kind in ("square", "zigzag"):
            r = httpx.post(url + "/api/predict", files={"file": (f"{kind}.png", drawing(kind), "image/png")})
            body = r.json()
            assert r.status_code == 200 and body["not_a_digit"] is True, (kind, body["ood_score"])
            assert body["ood_score"] > card["ood"]["threshold"] and len(body["probabilities"]) == 10
        images, labels = digits
        answers = [httpx.post(url + "/api/predict", json={"pixels": img.tolist()}).json() for img in images]
        assert sum(a["not_a_digit"] for a in answers) == 0 and [a["label"] for a in answers][:5] == labels[:5]
        blank = httpx.post(url + "/api/predict", json={"pixels": [[0] * 28] * 28})
        assert blank.status_code == 422 and blank.json()["error"] == "no_digit"  # blank keeps its own answer
    finally:
        stop(proc)


@pytest.mark.parametrize("body, status, code", [
    ({"pixels": [[0] * 28] * 27}, 422, "invalid_pixels"),
    ({"pixels": [[0] * 27] * 28}, 422, "invalid_pixels"),
    ({"pixels": [["a"] * 28] * 28}, 422, "invalid_pixels"),
    ({"pixels": [[True] * 28] * 28}, 422, "invalid_pixels"),
    ({"pixels": [[300] * 28] * 28}, 422, "invalid_pixels"),
    ({"pixels": [[-1] * 28] * 28}, 422, "invalid_pixels"),
    ({"pixel": []}, 422, "invalid_pixels"),
    ([1, 2, 3], 422, "invalid_pixels"),
    ({"pixels": [[0] * 28] * 28}, 422, "no_digit"),
])
def test_bad_json(server, body, status, code):
    url, _ = server
    r = httpx.post(url + "/api/predict", json=body)
    assert (r.status_code, r.json()["error"]) == (status, code), r.text
    assert r.json()["detail"]


def test_predict_streamed_body_and_content_type_parameters(server, digits):
    """/api/predict is answered by plain ASGI in front of FastAPI: a chunked body is put together from its
    pieces, and a Content-Type with parameters is still JSON."""
    url, _ = server
    images, labels = digits
    body = json.dumps({"pixels": images[1].tolist()}).encode()
    pieces = iter([body[:100], body[100:2000], body[2000:]])  # an iterator: httpx sends it chunked
    r = httpx.post(url + "/api/predict", content=pieces, headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["label"] == labels[1], r.text
    assert r.headers["content-type"] == "application/json"
    r = httpx.post(url + "/api/predict", content=body, headers={"content-type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 200 and r.json()["label"] == labels[1]


def test_malformed_json_nan_and_unknown_content_type(server):
    url, _ = server
    r = httpx.post(url + "/api/predict", content='{"pixels": ', headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["error"]) == (400, "malformed_json"), r.text
    rows = [[0] * 28 for _ in range(28)]
    for bad in ("NaN", "Infinity", "-Infinity"):  # JSON extensions Python writes: a 28x28 image, one pixel not finite
        text = json.dumps({"pixels": rows}).replace("[0, ", f"[{bad}, ", 1)
        r = httpx.post(url + "/api/predict", content=text, headers={"content-type": "application/json"})
        assert (r.status_code, r.json()["error"]) == (422, "invalid_pixels"), r.text
        assert "pixels.0.0" in r.json()["detail"] and "finite number" in r.json()["detail"], r.text
    r = httpx.post(url + "/api/predict", content="hello", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"


def test_bad_images(server):
    url, _ = server
    gif = io.BytesIO()
    Image.new("L", (28, 28)).save(gif, "GIF")
    good = png(np.full((28, 28), 255, np.uint8))
    blank = png(np.zeros((28, 28), np.uint8))
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, "PNG")  # 400 Mpixels in ~50 KB
    assert len(bomb.getvalue()) < 1 << 20
    cases = [(b"just text", 415, "unsupported_image"), (gif.getvalue(), 415, "unsupported_image"),
             (b"", 415, "unsupported_image"), (good[:60], 400, "bad_image"),
             (good[:8] + b"\x00" * 200, 400, "bad_image"), (bomb.getvalue(), 400, "image_too_large"),
             (blank, 422, "no_digit")]
    for data, status, code in cases:
        r = httpx.post(url + "/api/predict", files={"file": ("x.png", data, "image/png")})
        assert (r.status_code, r.json()["error"]) == (status, code), (data[:16], r.text)
    r = httpx.post(url + "/api/predict", data={"other": "1"}, files={"notfile": ("a.txt", b"x", "text/plain"),
                                                                     "again": ("b.txt", b"y", "text/plain")})
    assert r.status_code == 422 and r.json()["error"] == "missing_file"


def raw_http(url: str, head: bytes, chunks=()) -> bytes:
    """Send a request by hand (to control Content-Length and chunking); return what came back."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head)
        try:
            for c in chunks:
                s.sendall(c)
        except OSError:
            pass  # the server refused and closed before we finished: that is the point
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.find(b"\r\n\r\n") + 50:
            part = s.recv(65536)
            if not part:
                break
            data += part
        return data


def test_body_over_the_limit_is_refused_without_reading_it(server):
    url, _ = server
    declared = raw_http(url, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                             b"Content-Length: 50000000\r\n\r\n" + b"x" * 1000)  # 50 MB declared, 1 KB sent
    assert declared.startswith(b"HTTP/1.1 413") and b"body_too_large" in declared
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    streamed = raw_http(url, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n", [chunk] * 40)  # 2.5 MB, no length given
    assert streamed.startswith(b"HTTP/1.1 413") and b"body_too_large" in streamed
    big = httpx.post(url + "/api/predict", content=b"\x89PNG\r\n\x1a\n" + b"0" * (1 << 20),
                     headers={"content-type": "image/png"})
    assert big.status_code == 413


def test_still_alive_and_nothing_written(server):
    url, tmp = server
    assert httpx.get(url + "/api/health").json()["status"] == "ok"
    assert {p.name for p in tmp.iterdir()} <= {"cache", "tmp"}
    assert list((tmp / "tmp").iterdir()) == []


@pytest.mark.slow
def test_serve_a_run_folder_a_smaller_limit_and_bad_arguments(tmp_path):
    assert callable(main)  # the console script's entry point exists
    model = Path(__file__).parents[1] / "src" / "digitlab" / "pretrained" / "digits-cnn.safetensors"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.safetensors").write_bytes(model.read_bytes())
    proc, url = start(tmp_path / "run", "--max-body", "1000", tmp_path=tmp_path)
    try:
        assert httpx.get(url + "/api/model").json()["file"] == "model.safetensors"
        r = httpx.post(url + "/api/predict", content=b"x" * 2000, headers={"content-type": "image/png"})
        assert r.status_code == 413
    finally:
        stop(proc)
    bad = subprocess.run([sys.executable, "-m", "digitlab", "serve", str(tmp_path / "nothing")], capture_output=True,
                         text=True, env=run_env(tmp_path), timeout=HANG_S)
    assert bad.returncode == 2 and "no such run folder" in bad.stderr
    (tmp_path / "fake.safetensors").write_bytes(b"not safetensors")
    fake = subprocess.run([sys.executable, "-m", "digitlab", "serve", str(tmp_path / "fake.safetensors")],
                          capture_output=True, text=True, env=run_env(tmp_path), timeout=HANG_S)
    assert fake.returncode == 2 and "safetensors" in fake.stderr


@pytest.mark.slow
def test_decoders_in_processes_prepare_as_predict_does_and_survive_a_dead_worker(digits):
    """The server's image decoding runs in worker processes: the same input as `prepare_image`, refusals crossing
    back as ApiError with their status, and a worker killed mid-flight costs its request, not the server."""
    import asyncio
    import os
    import pickle
    import signal
    from concurrent.futures.process import BrokenProcessPool

    import torch

    from digitlab.data.images import prepare_image
    from digitlab.serve.inputs import ApiError, Decoders

    e = pickle.loads(pickle.dumps(ApiError(422, "no_digit", "blank")))
    assert (e.status, e.code, e.detail) == (422, "no_digit", "blank")
    images, _ = digits
    data = png(images[0])
    blank = png(np.zeros((28, 28), np.uint8))

    async def check(decoders):
        assert torch.equal(await decoders(data), prepare_image(data))
        with pytest.raises(ApiError) as refused:
            await decoders(blank)
        assert refused.value.status == 422 and refused.value.code == "no_digit"

    for workers in (0, 1):
        decoders = Decoders(prepare_image, workers=workers)
        decoders.start()
        try:
            asyncio.run(check(decoders))
            if workers:
                for pid in list(decoders.pool._processes):
                    os.kill(pid, signal.SIGKILL)
                with pytest.raises(BrokenProcessPool):
                    asyncio.run(check(decoders))
                asyncio.run(check(decoders))  # a fresh pool
        finally:
            decoders.close()
