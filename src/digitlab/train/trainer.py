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
from .metrics import accuracy, exact_accuracy
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
    """The training loader shuffles with the config's seed; both keep uint8 images on the device.

    In a distributed run `cfg.bs` is the global batch: each of the world_size processes takes bs/world_size.
    """
    if cfg.bs % world_size:
        raise ConfigError(f"the batch size {cfg.bs} is the global batch and must divide evenly over "
                          f"{world_size} processes; use a multiple of {world_size}.")
    return DataLoaders(
        DataLoader(data.train.images, data.train.labels, cfg.bs // world_size, shuffle=True, seed=cfg.seed,
                   device=device, tfm=to_input, rank=rank, world_size=world_size),
        DataLoader(data.valid.images, data.valid.labels, VALID_BS, device=device, tfm=to_input, rank=rank,
                   world_size=world_size, pad=False))


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


def build_learner(cfg: TrainConfig, data: TaskData, device: torch.device, cbs: Iterable[Callback] = (),
                  rank: int = 0, world_size: int = 1) -> Learner:
    """Model, data, loss, optimizer and the standard callbacks for a config (seeded first: every rank starts
    from the same weights)."""
    seed_everything(cfg.seed)
    model = build_model(cfg.model, len(data.classes)).to(device)
    cbs = [Recorder(), NanGuard(), *schedule_callbacks(cfg), *augment_callbacks(cfg), *cbs]
    if world_size > 1:
        from .distributed import DistributedTrainer

        cbs.append(DistributedTrainer())
    return Learner(model, build_dls(data, cfg, device, rank, world_size), loss_func(cfg), lr=cfg.lr, cbs=cbs,
                   opt_func=opt_func(cfg), metrics=[accuracy])


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
    return {"accuracy": exact_accuracy(preds, split.labels), "loss": losses.mean().item(),
            "errors": int((preds != split.labels).sum()), "n": len(split), "probs": probs, "preds": preds,
            "losses": losses}


@dataclass
class TrainResult:
    learn: Learner
    recorder: Recorder
    summary: dict
    run_dir: Path | None = None
    data: TaskData | None = field(default=None, repr=False)
    probs: torch.Tensor | None = field(default=None, repr=False)  # final class probabilities on data.valid


CHECKPOINT_FILE = "checkpoint.safetensors"


def fit(cfg: TrainConfig, cbs: Iterable[Callback] = (), data: TaskData | None = None, run_dir: Path | None = None,
        resume: bool = False, checkpoint_every: int | None = None) -> TrainResult:
    """Train per the config and evaluate on the validation (test) set.

    With `run_dir`, a checkpoint is kept there (every epoch, every `checkpoint_every` steps, and on SIGINT or
    SIGTERM), and `resume=True` continues from it exactly. Writes nothing else: see digitlab.runs.record_run.
    """
    from . import distributed
    from .checkpoint import Checkpointer, restore

    rank, world_size, _ = distributed.world()
    device = resolve_device(cfg.device)
    if world_size > 1:
        device = distributed.init(device)
    data = data or load_task(cfg.task, cfg.data)
    ckpt = Path(run_dir) / CHECKPOINT_FILE if run_dir is not None else None
    extra = [Checkpointer(ckpt, checkpoint_every, cfg.to_dict(), write=rank == 0)] if ckpt else []
    learn = build_learner(cfg, data, device, [*extra, *cbs], rank, world_size)
    if resume:
        restore(learn, ckpt, cfg.to_dict())
    start = time.perf_counter()
    learn.fit(cfg.epochs, cfg.lr)
    seconds = time.perf_counter() - start
    rec = next(cb for cb in learn.cbs if isinstance(cb, Recorder))
    kept = learn.diverged and ckpt is not None and ckpt.exists()
    if kept:
        restore_weights(learn.model, ckpt)  # the last good weights, not the NaNs
    final = evaluate(learn.model, data.valid)
    accs = [log.get("accuracy", 0.0) for log in rec.logs]
    status = "diverged" if learn.diverged else "interrupted" if getattr(learn, "interrupted", None) else "finished"
    if learn.diverged:
        learn.diverged["kept_checkpoint"] = bool(kept)
    summary = {"status": status, "diverged": learn.diverged, "interrupted": getattr(learn, "interrupted", None),
               "accuracy": final["accuracy"], "errors": final["errors"], "n_valid": final["n"],
               "valid_loss": final["loss"], "best_accuracy": max(accs) if accs else None,
               "epochs_done": len(rec.logs), "train_seconds": seconds, "params": n_params(learn.model),
               "device": str(device), "classes": list(data.classes)}
    return TrainResult(learn, rec, summary, run_dir=run_dir, data=data, probs=final["probs"])


def restore_weights(model: torch.nn.Module, ckpt: Path) -> None:
    """Only the model weights of a checkpoint."""
    from .checkpoint import load_checkpoint

    tensors, _ = load_checkpoint(ckpt)
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})


def divergence_message(diverged: dict) -> str:
    kept = ("the weights of the last checkpoint before it were kept" if diverged.get("kept_checkpoint")
            else "no checkpoint had been written yet, so there are no good weights to keep")
    return (f"training diverged: the loss became {diverged['loss']} at epoch {diverged['epoch']}, step "
            f"{diverged['step']}. Lower the learning rate (try `digitlab lr-find` to choose one); {kept}.")


def start_run(cfg: TrainConfig, runs_root: str | Path = "runs", name: str | None = None) -> Path:
    """Create the run folder and write config.json first, so that an interrupted run can be resumed."""
    from ..runs import environment, new_run_dir, write_json

    run = new_run_dir(runs_root, name, f"{cfg.task}-{cfg.model}")
    write_json(run / "config.json", {"config": cfg.to_dict(), "environment": environment(resolve_device(cfg.device))})
    return run


def run_config(run: str | Path) -> TrainConfig:
    """The config a run folder was started with."""
    import json

    path = Path(run) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{run}: not a run folder (no config.json). `digitlab runs` lists the runs.")
    return TrainConfig.from_dict(json.loads(path.read_text())["config"])


def train_run(cfg: TrainConfig | None = None, runs_root: str | Path = "runs", name: str | None = None,
              resume: str | Path | None = None, checkpoint_every: int | None = None,
              cbs: Iterable[Callback] = ()) -> TrainResult:
    """`digitlab train`: a new run folder (or, with `resume`, an interrupted one continued exactly), training
    with checkpoints, then the run record (metrics, weights, plots, report).

    Under torchrun every process trains; only rank 0 writes, and only rank 0 runs the callbacks in `cbs`
    (progress display). Other ranks learn the run folder from rank 0.
    """
    from ..runs import record_run
    from . import distributed

    rank, world_size, _ = distributed.world()
    if resume is not None:
        run, cfg = Path(resume), run_config(resume)
    else:
        run = start_run(cfg, runs_root, name) if rank == 0 else None
    try:
        if world_size > 1 and resume is None:
            run = Path(shared_from_rank0(cfg, str(run) if run else ""))
        result = fit(cfg, cbs if rank == 0 else (), run_dir=run, resume=resume is not None,
                     checkpoint_every=checkpoint_every)
        if rank == 0:
            record_run(result, cfg, run)
    finally:
        distributed.shutdown()
    return result


def shared_from_rank0(cfg: TrainConfig, value: str) -> str:
    """Rank 0's string (the run folder) on every rank."""
    import torch.distributed as dist

    from . import distributed

    distributed.init(resolve_device(cfg.device))
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
