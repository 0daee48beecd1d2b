"""Export a saved model to ONNX or TorchScript, and check that the export predicts what the original does.

Both exports take what every digitlab model takes, float (N, 1, 28, 28) in [0, 1] (normalisation is inside the
model), for any batch size N, and return (N, C) class scores; the classes and the input description travel in
the file's metadata (ONNX metadata_props; a TorchScript extra file `digitlab.json`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from .errors import DigitlabError
from .runs import resolve_model_file
from .weights import INPUT_SPEC, load_model

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
META_FILE = "digitlab.json"


class ExportError(DigitlabError, RuntimeError):
    """An export failed, or the exported model does not predict what the original does."""


def example_input(n: int = 2) -> torch.Tensor:
    """n random inputs (N, 1, 28, 28) in [0, 1], the same on every call."""
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def export_onnx(model: torch.nn.Module, path: str | Path, meta: dict) -> Path:
    """Write an ONNX file with a dynamic batch dimension; meta goes into the model's metadata_props."""
    try:
        import onnx  # deferred: an optional extra, and slow to import
    except ImportError:
        raise ExportError("ONNX export needs the onnx packages: pip install 'digitlab[export]'.") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example_input(),), str(path), input_names=["images"], output_names=["scores"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False,
                          verbose=False)
    proto = onnx.load(str(path))
    for key, value in {"digitlab": json.dumps(meta), "classes": json.dumps(meta.get("classes"))}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


def export_torchscript(model: torch.nn.Module, path: str | Path, meta: dict) -> Path:
    """Write a TorchScript file (traced in eval mode); meta goes in as the extra file digitlab.json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example_input())
        torch.jit.save(traced, str(path), _extra_files={META_FILE: json.dumps(meta)})
    return path


def run_onnx(path: str | Path, x: torch.Tensor) -> torch.Tensor:
    """Scores from an ONNX file by onnxruntime on the CPU."""
    import onnxruntime as ort  # deferred: an optional extra, and slow to import

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def run_torchscript(path: str | Path, x: torch.Tensor) -> torch.Tensor:
    """Scores from a TorchScript file on the CPU."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu")(x)


def check_export(model: torch.nn.Module, path: Path, fmt: str, x: torch.Tensor) -> dict:
    """Compare the export's predictions with the original model's on x: the share of equal labels and the
    largest difference in scores."""
    with torch.no_grad():
        ref = model.eval().cpu()(x)
    got = (run_onnx if fmt == "onnx" else run_torchscript)(path, x)
    return {"n": len(x), "same_labels": float((ref.argmax(1) == got.argmax(1)).float().mean()),
            "max_abs_diff": float((ref - got).abs().max())}


def export_model(run_or_file: str | Path, fmt: str = "onnx", out: str | Path | None = None,
                 check_images: torch.Tensor | None = None) -> tuple[Path, dict]:
    """Export a run's model; check it on `check_images` (N, 28, 28) in [0, 1] (default: random inputs).

    Raises ExportError when the export does not give the same labels."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    src = resolve_model_file(run_or_file)
    model, meta = load_model(src)
    out = Path(out) if out else src.with_suffix(FORMATS[fmt])
    meta = {**{k: meta[k] for k in ("model", "classes", "task") if k in meta}, "input": INPUT_SPEC}
    path = (export_onnx if fmt == "onnx" else export_torchscript)(model, out, meta)
    x = check_images.unsqueeze(1).float() if check_images is not None else example_input(64)
    check = check_export(model, path, fmt, x)
    if check["same_labels"] < 1.0 or check["max_abs_diff"] > 1e-3:
        raise ExportError(f"{path}: the {fmt} export disagrees with the original model ({check}); do not use it.")
    return path, check
