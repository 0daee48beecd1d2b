"""Export a saved model to ONNX or TorchScript, and check that the export predicts what the original does.

Both exports take what every digitlab model takes, float (N, 1, 28, 28) in [0, 1] (normalisation is inside the
model), for any batch size N, and return (N, C) class scores; the classes and the input description travel in
the file's metadata (ONNX metadata_props; a TorchScript extra file `digitlab.json`). The ONNX export of a model
with a "not a digit" detector (digitlab.ood) returns a second output, `ood_score` (N,): an image is none of the classes
when its score is above the threshold in the metadata (`ood_threshold`, and `ood` with the detector's name and
how it was set). TorchScript files keep their one output, the scores (what existing users of them call).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from .data import preparation
from .errors import DigitlabError
from .ood import Detector, ScoredModel
from .runs import resolve_model_file
from .weights import INPUT_SPEC, load_model_and_extras

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
    outputs = ["scores", "ood_score"] if isinstance(model, ScoredModel) else ["scores"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example_input(),), str(path), input_names=["images"], output_names=outputs,
                          dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False,
                          verbose=False)
    proto = onnx.load(str(path))
    props = {"digitlab": json.dumps(meta), "classes": json.dumps(meta.get("classes")),
             "preparation": json.dumps(meta.get("preparation"))}  # what a caller does to a picture first
    if meta.get("ood"):
        props["ood_threshold"] = json.dumps(meta["ood"].get("threshold"))
    for key, value in props.items():
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


def onnx_outputs(path: str | Path, x: torch.Tensor) -> list[torch.Tensor]:
    """Every output of an ONNX file by onnxruntime on the CPU: scores, and ood_score where it has a detector."""
    import onnxruntime as ort  # deferred: an optional extra, and slow to import

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(o) for o in session.run(None, {session.get_inputs()[0].name: x.numpy()})]


def run_onnx(path: str | Path, x: torch.Tensor) -> torch.Tensor:
    """Scores from an ONNX file by onnxruntime on the CPU."""
    return onnx_outputs(path, x)[0]


def torchscript_outputs(path: str | Path, x: torch.Tensor) -> list[torch.Tensor]:
    """Every output of a TorchScript file on the CPU: scores, and ood_score where it has a detector."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        out = torch.jit.load(str(path), map_location="cpu")(x)
    return list(out) if isinstance(out, (tuple, list)) else [out]


def run_torchscript(path: str | Path, x: torch.Tensor) -> torch.Tensor:
    """Scores from a TorchScript file on the CPU."""
    return torchscript_outputs(path, x)[0]


def check_export(model: torch.nn.Module, path: Path, fmt: str, x: torch.Tensor) -> dict:
    """Compare the export's predictions with the original model's on x: the share of equal labels and the
    largest difference in scores (and, with a detector, in its scores, relative to their spread)."""
    with torch.no_grad():
        ref = model.eval().cpu()(x)
    got = (onnx_outputs if fmt == "onnx" else torchscript_outputs)(path, x)
    ref = list(ref) if isinstance(ref, tuple) else [ref]
    check = {"n": len(x), "same_labels": float((ref[0].argmax(1) == got[0].argmax(1)).float().mean()),
             "max_abs_diff": float((ref[0] - got[0]).abs().max())}
    if len(ref) > 1:
        if len(got) < 2:
            raise ExportError(f"{path}: the export has no ood_score output; export again.")
        spread = float(ref[1].std()) if len(ref[1]) > 1 else 1.0
        check["ood_max_rel_diff"] = float((ref[1] - got[1]).abs().max()) / max(spread, 1e-6)
    return check


def export_model(run_or_file: str | Path, fmt: str = "onnx", out: str | Path | None = None,
                 check_images: torch.Tensor | None = None) -> tuple[Path, dict]:
    """Export a run's model; check it on `check_images` (N, 28, 28) in [0, 1] (default: random inputs).

    Raises ExportError when the export does not give the same labels."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    src = resolve_model_file(run_or_file)
    model, meta, extras = load_model_and_extras(src)
    detector = Detector.from_meta(meta, extras)
    if detector is not None and fmt == "onnx":  # the ONNX file returns the detector's score as a second output
        model = ScoredModel(model, detector)
    out = Path(out) if out else src.with_suffix(FORMATS[fmt])
    # "preparation": how the caller must turn a picture into the input (data/preparation.py), as training read its own
    # "temperature": softmax(scores / T) are the calibrated probabilities digitlab predict reports
    meta = {**{k: meta[k] for k in ("model", "classes", "task", "ood", "temperature") if k in meta}, "input": INPUT_SPEC,
            "preparation": preparation.of_model(meta, str(src))}
    path = (export_onnx if fmt == "onnx" else export_torchscript)(model, out, meta)
    x = check_images.unsqueeze(1).float() if check_images is not None else example_input(64)
    check = check_export(model, path, fmt, x)
    if check["same_labels"] < 1.0 or check["max_abs_diff"] > 1e-3 or check.get("ood_max_rel_diff", 0) > 1e-3:
        raise ExportError(f"{path}: the {fmt} export disagrees with the original model ({check}); do not use it.")
    return path, check
