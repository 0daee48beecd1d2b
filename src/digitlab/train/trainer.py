"""From a TrainConfig to a trained model in a run folder: the one code path behind `digitlab train`."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..config import TrainConfig
from ..data.loader import DataLoader, DataLoaders
from ..data.mnist import Split
from ..data.tasks import TaskData, load_task, to_input
from ..errors import ConfigError
from ..models.layers import n_params
from ..models.registry import build_model
from .callbacks import NanGuard, Recorder
from .learner import Callback, Learner
from .losses import cross_entropy, softmax
from .metrics import accuracy
from .optim import SGD, Adam
from .schedule import OneCycle

VALID_BS = 1024


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda when a GPU is present; an unavailable device is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this machine has no CUDA GPU; use --device cpu.")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_dls(data: TaskData, cfg: TrainConfig, device: torch.device, rank: int = 0, world_size: int = 1) -> DataLoaders:
    """The training loader shuffles with the config's seed; both keep uint8 images on the device."""
    return DataLoaders(
        DataLoader(data.train.images, data.train.labels, cfg.bs, shuffle=True, seed=cfg.seed, device=device,
                   tfm=to_input, rank=rank, world_size=world_size),
        DataLoader(data.valid.images, data.valid.labels, VALID_BS, device=device, tfm=to_input))


def opt_func(cfg: TrainConfig):
    """The optimizer constructor the config names, with its momentum and weight decay."""
    if cfg.opt == "sgd":
        return lambda params, lr: SGD(params, lr, mom=cfg.mom, wd=cfg.wd, nesterov=cfg.mom > 0)
    return lambda params, lr: Adam(params, lr, mom=cfg.mom, wd=cfg.wd, decouple_wd=cfg.opt == "adamw")


def loss_func(cfg: TrainConfig):
    ls = cfg.label_smoothing
    return lambda preds, yb: cross_entropy(preds, yb, ls)


def schedule_callbacks(cfg: TrainConfig) -> list[Callback]:
    return [OneCycle(cfg.lr)] if cfg.schedule == "one_cycle" else []


def augment_callbacks(cfg: TrainConfig) -> list[Callback]:
    """Batch augmentation when the config asks for it (see digitlab.data.augment)."""
    if not cfg.augment:
        return []
    from ..data.augment import BatchAugment

    return [BatchAugment(seed=cfg.seed)]


def build_learner(cfg: TrainConfig, data: TaskData, device: torch.device, cbs: Iterable[Callback] = ()) -> Learner:
    """Model, data, loss, optimizer and the standard callbacks for a config (seeded first)."""
    seed_everything(cfg.seed)
    model = build_model(cfg.model, len(data.classes)).to(device)
    cbs = [Recorder(), NanGuard(), *schedule_callbacks(cfg), *augment_callbacks(cfg), *cbs]
    return Learner(model, build_dls(data, cfg, device), loss_func(cfg), lr=cfg.lr, cbs=cbs, opt_func=opt_func(cfg),
                   metrics=[accuracy])


@torch.no_grad()
def predict_probs(model: torch.nn.Module, images: torch.Tensor, bs: int = VALID_BS) -> torch.Tensor:
    """Class probabilities (N, C) for uint8 images (N, 28, 28), in eval mode, batched."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [softmax(model(to_input(images[i:i + bs].to(device))).float()).cpu() for i in range(0, len(images), bs)]
    model.train(was_training)
    return torch.cat(out)


def evaluate(model: torch.nn.Module, split: Split) -> dict:
    """Accuracy, loss and per-image predictions of a model on a split whose labels are class indices."""
    probs = predict_probs(model, split.images)
    preds = probs.argmax(1)
    losses = -probs.clamp_min(1e-12).log().gather(1, split.labels.view(-1, 1)).squeeze(1)
    return {"accuracy": (preds == split.labels).float().mean().item(), "loss": losses.mean().item(),
            "errors": int((preds != split.labels).sum()), "n": len(split), "probs": probs, "preds": preds,
            "losses": losses}


@dataclass
class TrainResult:
    learn: Learner
    recorder: Recorder
    summary: dict
    run_dir: Path | None = None
    data: TaskData | None = field(default=None, repr=False)


def fit(cfg: TrainConfig, cbs: Iterable[Callback] = (), data: TaskData | None = None) -> TrainResult:
    """Train per the config and evaluate on the validation (test) set; writes nothing."""
    device = resolve_device(cfg.device)
    data = data or load_task(cfg.task, cfg.data)
    learn = build_learner(cfg, data, device, cbs)
    start = time.perf_counter()
    learn.fit(cfg.epochs, cfg.lr)
    seconds = time.perf_counter() - start
    rec = next(cb for cb in learn.cbs if isinstance(cb, Recorder))
    final = evaluate(learn.model, data.valid)
    accs = [log.get("accuracy", 0.0) for log in rec.logs]
    summary = {"status": "diverged" if learn.diverged else "finished", "diverged": learn.diverged,
               "accuracy": final["accuracy"], "errors": final["errors"], "n_valid": final["n"],
               "valid_loss": final["loss"], "best_accuracy": max(accs) if accs else None,
               "epochs_done": len(rec.logs), "train_seconds": seconds, "params": n_params(learn.model),
               "device": str(device), "classes": list(data.classes)}
    return TrainResult(learn, rec, summary, data=data)
