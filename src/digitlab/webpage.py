"""`digitlab export --format web`: a trained model as a static web page that runs in any browser, with no server.

The folder holds the very page `digitlab serve` serves (serve/static: index.html, app.js, style.css, prepare.js),
ONNX Runtime Web (serve/static/ort: pinned, MIT, nothing fetched from a CDN), the model as ONNX with its
detector's score as a second output, and model.json: the classes, how a picture is prepared, the temperature, the
detector's threshold and the model's card. In the browser, prepare.js makes a drawing the model's input as
`digitlab predict` does (Python's preparation ported step for step), ONNX Runtime Web runs the model, and the page
shows what `digitlab predict` would say. Any static file server will do: `python -m http.server -d OUT`, or
`digitlab serve --page OUT`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import torch

from .card import model_card
from .export import ExportError, export_model
from .predict import Classifier, outsider_words
from .runs import resolve_model_file

MAX_MODEL_BYTES = 100 * 2**20  # a static host's limit (GitHub Pages refuses larger files), and a phone's patience
PAGE_FILES = ("app.js", "style.css", "prepare.js")
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "LICENSE", "vendor.json")
MODEL_JSON = "model/model.json"
MODEL_MARK = '<meta name="digitlab-model" content="">'  # index.html's switch: empty, the page asks the server


def page_source() -> Path:
    """The page's files in the installed package (serve/static)."""
    return Path(str(resources.files("digitlab") / "serve" / "static"))


def runtime_version() -> str:
    """The version of ONNX Runtime Web shipped with digitlab (serve/static/ort/vendor.json)."""
    return json.loads((page_source() / "ort" / "vendor.json").read_text())["version"]


def export_page(run_or_file: str | Path | None, out: str | Path, check_images: torch.Tensor | None = None,
                max_model_bytes: int = MAX_MODEL_BYTES) -> tuple[Path, dict]:
    """Write the page for a run's model (None: the shipped model) into the folder `out`; return (out, model.json).

    `check_images` (N, 28, 28) in [0, 1]: the ONNX file must give the original's labels on them (export_model).
    A folder that holds anything but an earlier export is refused, and nothing in it is touched; a failed export
    leaves `out` as it was."""
    src = resolve_model_file(run_or_file)
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MODEL_JSON).is_file())):
        raise ExportError(f"{out}: exists and is not an earlier page export; give a new or empty folder (nothing "
                          f"in it was changed).")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".digitlab-page-", dir=out.parent))
    work.chmod(0o755)  # mkdtemp's 0700 would keep a web server's own user out
    try:
        onnx_path, check = export_model(src, "onnx", work / "model" / "model.onnx", check_images)
        size = onnx_path.stat().st_size
        if size > max_model_bytes:
            raise ExportError(f"{src}: its ONNX file is {size / 2**20:.1f} MB, more than the {max_model_bytes / 2**20:.0f} "
                              f"MB a page should load (static hosts such as GitHub Pages refuse larger files, and a "
                              f"phone would wait long for it). Export a smaller model (fastcnn, cnn), or serve this one "
                              f"with `digitlab serve`.")
        clf = Classifier.load(src)
        spec = {"format": 1, "model": "model.onnx", "classes": clf.classes, "digits": clf.digits,
                "verdict": outsider_words(clf.digits), "preparation": clf.preparation,
                "temperature": clf.temperature,
                "ood": None if clf.detector is None else {"name": clf.detector.name,
                                                          "threshold": clf.detector.threshold},
                "card": model_card(clf, src), "runtime": {"name": "onnxruntime-web", "version": runtime_version()},
                "onnx_bytes": size, "check": check}
        (work / MODEL_JSON).write_text(json.dumps(spec, indent=1))
        write_page(work)
        if out.exists():
            shutil.rmtree(out)  # an earlier export of a page (checked above), replaced whole
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out, spec


def write_page(folder: Path) -> None:
    """The page's files and ONNX Runtime Web into folder, index.html switched to the model in model/."""
    source = page_source()
    index = (source / "index.html").read_text()
    if MODEL_MARK not in index:
        raise ExportError(f"{source / 'index.html'}: has no {MODEL_MARK}; the installed package is damaged.")
    (folder / "index.html").write_text(index.replace(MODEL_MARK, MODEL_MARK.replace('""', f'"{MODEL_JSON}"')))
    (folder / "static" / "ort").mkdir(parents=True)
    for name in PAGE_FILES:
        shutil.copyfile(source / name, folder / "static" / name)
    for name in ORT_FILES:
        shutil.copyfile(source / "ort" / name, folder / "static" / "ort" / name)


def page_weight(folder: str | Path) -> dict[str, int]:
    """Bytes of every file in an exported page's folder, by path relative to it."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
