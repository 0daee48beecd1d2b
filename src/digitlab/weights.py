"""Model files: weights as safetensors with the architecture and preprocessing in the metadata.

Loading never unpickles anything: safetensors holds only tensors, and the metadata is JSON. A file made for
another architecture, or edited, gets a clear WeightsError instead of a crash deep inside PyTorch.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .errors import DigitlabError
from .fileio import atomic_write
from .models.registry import MODELS, build_model

META_KEY = "digitlab"
EXTRA_KEY = "extra_tensors"  # metadata: names of the file's tensors that are not the model's weights
INPUT_SPEC = "float32 (N, 1, 28, 28) in [0, 1], bright ink on a dark background, digit centred by mass (as MNIST)"


class WeightsError(DigitlabError, ValueError):
    """A weights file is missing, not safetensors, or does not fit the architecture it names."""


def save_model(model: nn.Module, path: str | Path, meta: dict, extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the model's state as safetensors; `meta` must name `model` (registry name) and `classes`. `extra`
    tensors (an out-of-distribution detector's statistics) go in the same file, their names listed in the
    metadata's EXTRA_KEY so that loading the model skips them."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    extra = {k: v.detach().cpu().contiguous() for k, v in (extra or {}).items()}
    clash = sorted(set(extra) & set(state))
    if clash:
        raise WeightsError(f"extra tensors {clash[:3]} have the names of the model's own weights.")
    state.update(extra)
    meta = {**{k: v for k, v in meta.items() if k != EXTRA_KEY}, "input": INPUT_SPEC}
    if extra:
        meta[EXTRA_KEY] = sorted(extra)
    return atomic_write(Path(path), lambda tmp: save_file(state, str(tmp), metadata={META_KEY: json.dumps(meta)}))


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and the digitlab metadata of a safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file. Give a run folder or a .safetensors file.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta_raw = (fh.metadata() or {}).get(META_KEY)
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError, or OSError, on a file it cannot parse
        raise WeightsError(f"{path}: not a readable safetensors file ({e}). digitlab loads weights only from "
                           f"safetensors files it wrote (model.safetensors in a run folder).") from None
    try:
        meta = json.loads(meta_raw) if meta_raw else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or "model" not in meta or "classes" not in meta:
        raise WeightsError(f"{path}: no digitlab metadata (model name and classes). Was it written by digitlab?")
    return tensors, meta


def load_model(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the model named in the file's metadata and load its weights, strictly; eval mode."""
    model, meta, _ = load_model_and_extras(path)
    return model, meta


def starting_weights(path: str | Path, model_name: str, classes) -> dict[str, torch.Tensor]:
    """The weights of a saved model to start a run from (fine-tuning): refused, saying why, unless the file holds
    the same architecture for the same classes."""
    model, meta = load_model(path)
    if meta["model"] != model_name or [str(c) for c in meta["classes"]] != [str(c) for c in classes]:
        raise WeightsError(f"{path}: a {meta['model']!r} model of classes {list(meta['classes'])}; this run trains "
                           f"{model_name!r} for {list(classes)}. Start from a model of the same kind (or set "
                           f"--model to {meta['model']}).")
    return model.state_dict()


def load_model_and_extras(path: str | Path) -> tuple[nn.Module, dict, dict[str, torch.Tensor]]:
    """load_model, and the file's extra tensors (those save_model's `extra` wrote: a detector's statistics)."""
    tensors, meta = read_weights(path)
    names = meta.get(EXTRA_KEY) or []
    extras = {k: tensors.pop(k) for k in names if k in tensors}
    if meta["model"] not in MODELS:
        raise WeightsError(f"{path}: made for model {meta['model']!r}, which this digitlab does not know "
                           f"({', '.join(sorted(MODELS))}).")
    model = build_model(meta["model"], len(meta["classes"]))
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    wrong = [f"{k}: file {tuple(tensors[k].shape)}, model {tuple(v.shape)}" for k, v in expected.items()
             if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or wrong:
        detail = "; ".join(filter(None, [f"missing {missing[:3]}" if missing else "",
                                         f"unexpected {unexpected[:3]}" if unexpected else "",
                                         f"wrong shapes {wrong[:3]}" if wrong else ""]))
        raise WeightsError(f"{path}: the weights do not fit model {meta['model']!r} with {len(meta['classes'])} "
                           f"classes ({detail}). The file was edited or made for another architecture.")
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WeightsError(f"{path}: weights {bad[:3]} contain NaN or infinity; retrain or use another file.")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
    return model.eval(), meta, extras
