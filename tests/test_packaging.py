"""The package as a new user gets it: build the wheel and the sdist, check them, install the wheel into a fresh
virtual environment outside the checkout, and run every command from an empty folder.

Only pip's set-up may reach a package index; the commands themselves run behind a proxy that refuses every
connection, with their own empty home and cache, and without PYTHONPATH, so nothing of the checkout can leak in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from functools import cache
from importlib.util import find_spec
from pathlib import Path

import httpx
import pytest
from PIL import Image

from digitlab.data import Split, load_split

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SDIST_SOURCES = ["pyproject.toml", "README.md", "src"]  # all the sdist is made of (there is no MANIFEST.in)
# what the commands read at run time, besides the code
RUN_TIME_FILES = [f"digitlab/datasets/mnist/{name}-idx{d}-ubyte.gz" for name, d in
                  (("train-images", 3), ("train-labels", 1), ("t10k-images", 3), ("t10k-labels", 1))] + [
                  "digitlab/pretrained/digits-cnn.safetensors", "digitlab/serve/static/index.html",
                  "digitlab/serve/static/prepare.js"] + [  # the exported page's runtime (digitlab export --format web)
                  f"digitlab/serve/static/ort/{name}" for name in ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs",
                                                                   "ort-wasm-simd-threaded.wasm", "LICENSE")]
WHEEL_LIMIT = 30e6  # issue 29: the wheel, ONNX Runtime Web's 14.8 MB of WebAssembly in it, stays under 30 MB
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: any download attempt fails at once


def pinned_torch() -> str:
    """The Makefile's torch pin (the local CPU wheel where the machine has one)."""
    return re.search(r"pip install -q (torch==[\w.+]+)", (ROOT / "Makefile").read_text()).group(1)


def torch_range() -> str:
    """The torch requirement in pyproject.toml, the Makefile's fallback."""
    return next(dep for dep in PROJECT["dependencies"] if re.match(r"torch\b", dep))


def checkout_free_env(**extra: str) -> dict:
    """The environment without anything that would point a fresh interpreter back at the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DIGITLAB_DATA")}
    return {**env, **extra}


def run(cmd: list, timeout: int = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; fail the test with its output when it does not succeed."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)
    command = " ".join(map(str, cmd))
    assert proc.returncode == 0, f"{command} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The sdist, and the wheel built from it, as `python -m build` makes them from a copy of the sources
    (a copy, so the build writes no build/ or egg-info into the working tree)."""
    missing = [name for name in ("build", "twine") if find_spec(name) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: `pip install -e .[test]` installs them.")
    tree, out = tmp_path_factory.mktemp("tree"), tmp_path_factory.mktemp("dist")
    for name in SDIST_SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, tree / name)
    # with setuptools already here, skip the isolated build environment (it would pip-install setuptools again)
    isolation = ["--no-isolation"] if find_spec("setuptools") else []
    run([sys.executable, "-m", "build", *isolation, "--outdir", out, tree], env=checkout_free_env())
    return out


@pytest.fixture(scope="module")
def user(dist, tmp_path_factory) -> dict:
    """A fresh virtual environment with torch and the wheel, an empty home, and an empty folder to work in."""
    base = tmp_path_factory.mktemp("user")
    venv, home, work = base / "venv", base / "home", base / "work"
    home.mkdir()
    work.mkdir()
    run([sys.executable, "-m", "venv", venv])
    py, pip_env = venv / "bin" / "python", checkout_free_env()
    pip = [py, "-m", "pip", "install", "-q"]
    # torch first, as the Makefile does it: the pinned local wheel, else any torch the project accepts
    if subprocess.run([*pip, pinned_torch()], capture_output=True, env=pip_env, timeout=600).returncode != 0:
        run([*pip, torch_range()], timeout=600, env=pip_env)
    run([*pip, next(dist.glob("*.whl"))], timeout=600, env=pip_env)
    env = checkout_free_env(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), NO_COLOR="1", COLUMNS="120",
                            TERM="dumb", http_proxy=DEAD_PROXY, https_proxy=DEAD_PROXY, HTTP_PROXY=DEAD_PROXY,
                            HTTPS_PROXY=DEAD_PROXY, ALL_PROXY=DEAD_PROXY, no_proxy="127.0.0.1,localhost",
                            NO_PROXY="127.0.0.1,localhost")
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env=env).stdout.strip())
    return {"bin": venv / "bin", "site": site, "home": home, "work": work, "env": env}


def digitlab(user: dict, *args) -> str:
    """`digitlab ARGS` as the fresh environment's console script runs it, from the empty folder; its stdout."""
    return run([user["bin"] / "digitlab", *args], cwd=user["work"], env=user["env"]).stdout


@cache
def mnist_test_split() -> Split:
    """MNIST's 10000 test images, loaded once."""
    return load_split("valid")


def digit_png(path: Path, digit: int) -> Path:
    """The first test image of `digit`, as a user's scan: dark ink on white paper, 280x280, RGB."""
    valid = mnist_test_split()
    image = valid.images[valid.labels == digit][0].numpy()
    Image.fromarray(255 - image).resize((280, 280), Image.Resampling.BILINEAR).convert("RGB").save(path)
    return path


def test_wheel_and_sdist_carry_the_run_time_files_and_pass_twine_check(dist):
    (wheel,), (sdist,) = dist.glob("*.whl"), dist.glob("*.tar.gz")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/src/", 1)[-1] for name in tar.getnames()}
    for name in RUN_TIME_FILES:
        assert name in in_wheel, f"{wheel.name} lacks {name}"
        assert name in in_sdist, f"{sdist.name} lacks {name}"
    assert 11e6 < wheel.stat().st_size < WHEEL_LIMIT  # the MNIST files really are inside; the whole under the bar
    print(f"{wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB")
    run([sys.executable, "-m", "twine", "check", "--strict", wheel, sdist])


def test_version_from_an_empty_folder(user):
    assert not any(user["work"].iterdir())
    assert digitlab(user, "--version").strip() == f"digitlab {PROJECT['version']}"


def test_data_info_verifies_the_files_inside_the_installed_package(user):
    out = digitlab(user, "data", "info")
    folder = Path(re.search(r"data folder: (\S+)", out).group(1))
    assert folder == user["site"] / "digitlab" / "datasets" / "mnist", out
    assert "sha256 of every file verified" in out and "60000" in out and "10000" in out
    assert (user["home"] / ".cache" / "digitlab" / "verified.json").exists()  # the check really ran, here


def test_reproduce_a_stage(user):
    out = digitlab(user, "reproduce", "--stage", "linear_sgd")
    assert "linear, SGD" in out
    (stage,) = json.loads((user["work"] / "reproduce" / "results.json").read_text())["stages"]
    assert stage["stage"] == "linear, SGD" and stage["accuracy"] > 0.97


def test_train_one_epoch_then_predict_pngs(user):
    digitlab(user, "train", "--task", "3v7", "--model", "linear", "--epochs", "1", "--name", "first", "-q")
    run_dir = user["work"] / "runs" / "first"
    assert (run_dir / "model.safetensors").exists()
    assert json.loads((run_dir / "summary.json").read_text())["accuracy"] > 0.95
    images = [digit_png(user["work"] / f"{d}.png", d) for d in (3, 7)]
    answers = json.loads(digitlab(user, "predict", run_dir, *images, "--json"))
    assert [a["label"] for a in answers] == [3, 7], answers


def test_serve_the_shipped_model(user):
    proc = subprocess.Popen([user["bin"] / "digitlab", "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=user["work"], env=user["env"])
    try:
        line = proc.stdout.readline()
        m = re.search(r"serving (\S+) at (http://127\.0\.0\.1:\d+)/", line)
        assert m, f"no address printed: {line!r}, exit {proc.poll()}"
        assert Path(m.group(1)) == user["site"] / "digitlab" / "pretrained" / "digits-cnn.safetensors"
        url = m.group(2)
        for _ in range(300):
            try:
                if httpx.get(url + "/api/health", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        for digit in range(10):
            png = digit_png(user["work"] / f"serve-{digit}.png", digit).read_bytes()
            r = httpx.post(url + "/api/predict", files={"file": (f"{digit}.png", png, "image/png")}, timeout=30,
                           trust_env=False)
            assert r.status_code == 200 and r.json()["label"] == digit, (digit, r.text)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -15), proc.stderr.read()[-3000:]
