"""Checkpoints that let a run continue exactly where it stopped, and the callback that writes them.

One safetensors file holds everything: the model's tensors, the optimizer's per-parameter state, the RNG states,
the partial sums of the epoch in progress and the Recorder's history; the rest (the Learner's position from its
state_dict, hyper-parameters,
Python and NumPy RNG states, config) is JSON in its metadata. It is written to a temporary file, fsynced and
renamed, so a crash or SIGKILL leaves either the old checkpoint or the new one, never half of one. Loading
never unpickles anything.

The Checkpointer also turns SIGINT/SIGTERM into a clean stop: the current step finishes, a checkpoint is written,
and training ends with `learn.interrupted` set. A second signal exits at once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
from pathlib import Path

import numpy as np
import torch

from ..errors import DigitlabError
from ..fileio import atomic_write
from .callback import Callback, CancelFitException

FORMAT = "digitlab-checkpoint-1"


class CheckpointError(DigitlabError, ValueError):
    """A checkpoint is missing, corrupt, edited, or made for another run."""


def optimizer_state(opt) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state_dict into tensors and JSON."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"groups": sd["groups"], "scalars": scalars}


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, py_state, gauss = random.getstate()
    return tensors, {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, list(py_state), gauss]}


def set_rng_state(tensors: dict, meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, py_state, gauss = meta["python"]
    random.setstate((version, tuple(py_state), gauss))


def callback_states(learn) -> tuple[dict[str, torch.Tensor], dict]:
    """State of callbacks that have one (state_dict/load_state_dict), such as the Recorder or augmentation."""
    tensors, meta = {}, {}
    for cb in learn.cbs:
        if hasattr(cb, "state_dict"):
            name = type(cb).__name__
            for key, value in cb.state_dict().items():
                if isinstance(value, torch.Tensor):
                    tensors[f"cb.{name}.{key}"] = value
                else:
                    meta.setdefault(name, {})[key] = value
    return tensors, meta


def save_checkpoint(learn, path: str | Path, config: dict | None = None) -> Path:
    """Write everything needed to continue `learn` from where it stands (its state_dict: between training batches
    or between epochs)."""
    from safetensors.torch import save_file  # deferred: safetensors, only when a checkpoint is written

    model = learn.model.module if hasattr(learn.model, "module") else learn.model  # unwrap DDP
    tensors = {f"model.{k}": v.detach() for k, v in model.state_dict().items()}
    opt_t, opt_meta = optimizer_state(learn.opt)
    rng_t, rng_meta = rng_state()
    cb_t, cb_meta = callback_states(learn)
    tensors.update(opt_t)
    tensors.update(rng_t)
    tensors.update(cb_t)
    position = learn.state_dict()  # {"epoch", "iter" (training batches done), "count", "sums", "epochs_before"}
    tensors["learn.sums"] = position.pop("sums")
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"format": FORMAT, "position": position,
            "optimizer": opt_meta, "rng": rng_meta, "callbacks": cb_meta, "config": config,
            "n_epochs": learn.n_epochs}
    return atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata={"digitlab": json.dumps(meta)}))


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and metadata of a checkpoint; CheckpointError if it is not one."""
    from safetensors import safe_open  # deferred: safetensors, only when a checkpoint is read

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there. A run writes checkpoint.safetensors after its first "
                              f"epoch (or every --checkpoint-every steps); start a new run instead.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("digitlab", "{}"))
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as e:  # safetensors' own error type, OSError, or bad JSON
        raise CheckpointError(f"{path}: not a readable checkpoint ({e}). It may be corrupt or edited.") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a digitlab checkpoint (format {meta.get('format')!r}).")
    return tensors, meta


def restore(learn, path: str | Path, config: dict | None = None) -> dict:
    """Load a checkpoint into `learn` (model, optimizer, RNGs, callbacks) and set where its next fit starts."""
    tensors, meta = load_checkpoint(path)
    if config is not None and meta.get("config") is not None:
        differ = sorted(k for k in config if k in meta["config"] and config[k] != meta["config"][k] and k != "device")
        if differ:
            raise CheckpointError(f"{path}: made with a different config ({', '.join(differ)}); resume with the "
                                  f"run's own config.json.")
    model = learn.model.module if hasattr(learn.model, "module") else learn.model
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = model.state_dict()
    if set(state) != set(expected) or any(state[k].shape != v.shape for k, v in expected.items()):
        raise CheckpointError(f"{path}: the checkpoint does not fit this model (made for another architecture, "
                              f"or edited).")
    model.load_state_dict(state)
    if learn.opt is None:
        learn.opt = learn.opt_func(learn.parameters(), learn.lr)
    params = learn.opt.params if hasattr(learn.opt, "params") else []
    opt_meta, opt_state = meta["optimizer"], {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(idx, {})[name] = value.to(params[int(idx)].device)
    for idx, scalars in opt_meta["scalars"].items():
        opt_state.setdefault(idx, {}).update(scalars)
    learn.opt.load_state_dict({"groups": opt_meta["groups"], "state": opt_state})
    set_rng_state(tensors, meta["rng"])
    for cb in learn.cbs:
        if hasattr(cb, "load_state_dict"):
            name = type(cb).__name__
            prefix = f"cb.{name}."
            cb.load_state_dict({**meta["callbacks"].get(name, {}),
                                **{k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}})
    learn.load_state_dict({**meta["position"], "sums": tensors["learn.sums"]})  # older files: no epochs_before
    return meta


class Checkpointer(Callback):
    """Writes a checkpoint after every epoch and every `every` training steps, and on SIGINT/SIGTERM.

    After a signal the current step finishes, the checkpoint is written, and the fit stops with
    learn.interrupted = "SIGINT" or "SIGTERM". A second signal exits the process at once (status 130).
    Only the process with `write=True` writes (rank 0 of a distributed run). On an engine without batch events
    (the fast engine) both happen at the epoch's end: that is where it can stop.
    """
    order = 90
    batch_events_optional = True

    def __init__(self, path: str | Path, every: int | None = None, config: dict | None = None, write: bool = True,
                 handle_signals: bool = True):
        self.path, self.every, self.config, self.write = Path(path), every, config, write
        self.handle_signals, self.requested, self.previous = handle_signals, None, {}

    def save(self, learn) -> None:
        if self.write:
            save_checkpoint(learn, self.path, self.config)

    def before_fit(self, learn):
        learn.interrupted, self.requested = None, None
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self.on_signal)

    def on_signal(self, signum, frame):
        if self.requested:  # the second signal: leave now (the last checkpoint on disk is whole)
            os._exit(130)
        self.requested = signal.Signals(signum).name

    def after_batch(self, learn):
        if not learn.training:
            return
        done = learn.iter + 1
        if self.requested:
            self.save(learn)  # this batch done: the resume starts at the next one
            learn.interrupted = self.requested
            raise CancelFitException()
        if self.every and (learn.epoch * learn.n_iter + done) % self.every == 0 and done < learn.n_iter:
            self.save(learn)

    def after_epoch(self, learn):
        self.save(learn)  # the epoch has ended: the resume starts at the next one
        if self.requested:
            learn.interrupted = self.requested
            raise CancelFitException()

    def cleanup_fit(self, learn):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}
