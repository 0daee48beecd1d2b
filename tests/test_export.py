"""Exports give the same predictions as the original: ONNX through onnxruntime, TorchScript through torch.jit."""

from __future__ import annotations

import json

import pytest
import torch

from digitlab import export
from digitlab.export import ExportError, check_export, export_model, run_onnx, run_torchscript
from digitlab.models.registry import build_model
from digitlab.weights import save_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory, mnist):
    """A CNN (conv, BatchNorm with real running statistics, pooling) saved as a run's model file."""
    torch.manual_seed(0)
    model = build_model("cnn", 10)
    model.train()
    with torch.no_grad():  # a few forward passes in train mode give BatchNorm non-trivial running statistics
        for i in range(3):
            model(mnist["train"].images[i * 256:(i + 1) * 256].unsqueeze(1).float() / 255)
    path = save_model(model.eval(), tmp_path_factory.mktemp("run") / "model.safetensors",
                      {"model": "cnn", "classes": list(range(10)), "task": "digits"})
    return path, model


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_predicts_what_the_original_predicts(saved, mnist, fmt):
    path, model = saved
    x = mnist["valid"].images[:300].float() / 255
    out, check = export_model(path, fmt, path.parent / f"m.{fmt}", x)
    assert out.exists() and check["same_labels"] == 1.0 and check["max_abs_diff"] < 1e-3
    for n in (1, 7, 300):  # any batch size
        xb = x[:n].unsqueeze(1)
        got = (run_onnx if fmt == "onnx" else run_torchscript)(out, xb)
        with torch.no_grad():
            ref = model(xb)
        assert got.shape == (n, 10) and torch.allclose(got, ref, atol=1e-4)


@pytest.mark.slow
def test_exports_carry_the_classes(saved):
    path, _ = saved
    import onnx  # deferred: slow to import, and only this test reads an ONNX file itself

    onnx_path, _ = export_model(path, "onnx", path.parent / "meta.onnx")
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(props["classes"]) == list(range(10)) and json.loads(props["digitlab"])["model"] == "cnn"
    assert json.loads(props["preparation"]) == {"kind": "handwriting"}  # what a caller does to a picture first
    ts_path, _ = export_model(path, "torchscript", path.parent / "meta.pt")
    extra = {"digitlab.json": ""}
    torch.jit.load(str(ts_path), _extra_files=extra)
    assert json.loads(extra["digitlab.json"])["classes"] == list(range(10))
    assert json.loads(extra["digitlab.json"])["preparation"] == {"kind": "handwriting"}


def test_a_wrong_export_is_caught(saved, tmp_path, monkeypatch):
    """export_model refuses, with ExportError, a file whose predictions differ from the original's: here the
    TorchScript writer is handed a model with other weights, as a broken exporter would write it."""
    path, model = saved
    torch.manual_seed(1)
    other = build_model("cnn", 10).eval()  # different weights: its predictions differ
    write = export.export_torchscript
    monkeypatch.setattr(export, "export_torchscript", lambda _model, out, meta: write(other, out, meta))
    with pytest.raises(ExportError, match="export disagrees with the original model"):
        export_model(path, "torchscript", tmp_path / "wrong.pt")
    check = check_export(model, tmp_path / "wrong.pt", "torchscript", torch.rand(64, 1, 28, 28))
    assert check["max_abs_diff"] > 1e-3  # what the refusal saw
    with pytest.raises(ExportError, match="choose one of onnx, torchscript"):
        export_model(path, "tflite")
