"""From a TrainConfig to a trained model: `fit` runs the config on its engine and scores the final model once.

Nothing here writes a run folder (digitlab.runs does); with a `run_dir`, the Learner engine keeps its checkpoint
there so that a run can be continued exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from .. import inference
from ..config import TrainConfig
from ..data.loader import DataLoader, DataLoaders
from ..data.tasks import TaskData, load_task, to_input
from ..errors import ConfigError
from ..hardware import resolve_precision
from ..models.layers import set_normalization
from ..models.registry import build_model
from . import distributed
from .callback import Callback
from .callbacks import BatchAugment, NanGuard, Recorder
from .checkpoint import Checkpointer, load_checkpoint, restore
from .fast import FastTrainer
from .learner import Learner
from .losses import cross_entropy
from .metrics import accuracy
from .optim import SGD, Adam
from .result import TrainResult, final_scores, summarize
from .runtime import resolve_device, seed_everything
from .schedule import OneCycle

VALID_BS = 1024
CHECKPOINT_FILE = "checkpoint.safetensors"


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
                   world_size=world_size, pad=False, allow_empty=True))  # valid_size 0: fit skips validation


def opt_func(cfg: TrainConfig):
    """The optimizer constructor the config names, with its momentum and weight decay."""
    if cfg.opt == "sgd":
        return lambda params, lr: SGD(params, lr, mom=cfg.mom, wd=cfg.wd, nesterov=cfg.mom > 0)
    return lambda params, lr: Adam(params, lr, mom=cfg.mom, wd=cfg.wd, decouple_wd=cfg.opt == "adamw")


def loss_func(cfg: TrainConfig):
    ls = cfg.label_smoothing
    return lambda preds, yb: cross_entropy(preds, yb, ls)


def standard_callbacks(cfg: TrainConfig) -> list[Callback]:
    """Recording, the divergence guard, the config's schedule and augmentation."""
    cbs = [Recorder(), NanGuard()]
    if cfg.schedule == "one_cycle":
        cbs.append(OneCycle(cfg.lr))
    if cfg.augment:
        cbs.append(BatchAugment(seed=cfg.seed, shift=cfg.aug_shift, degrees=cfg.aug_degrees, scale=cfg.aug_scale,
                                flip=cfg.aug_flip))
    return cbs


def build_learner(cfg: TrainConfig, data: TaskData, device: torch.device, cbs: Iterable[Callback] = (),
                  rank: int = 0, world_size: int = 1) -> Learner:
    """Model, data, loss, optimizer and the standard callbacks for a config (seeded first: every rank starts
    from the same weights)."""
    seed_everything(cfg.seed)
    model = set_normalization(build_model(cfg.model, len(data.classes)), data.mean, data.std).to(device)
    cbs = [*standard_callbacks(cfg), *cbs]
    if world_size > 1:
        cbs.append(distributed.DataParallel())
    return Learner(model, build_dls(data, cfg, device, rank, world_size), loss_func(cfg), lr=cfg.lr, cbs=cbs,
                   opt_func=opt_func(cfg), metrics=[accuracy], precision=resolve_precision(cfg.precision, device))


class EpochLogs(Callback):
    """Hands each epoch's log to a function: progress lines that read the same from either engine."""
    order = 70

    def __init__(self, on_epoch: Callable[[dict], None]):
        self.on_epoch = on_epoch

    def after_epoch(self, learn):
        self.on_epoch(dict(learn.log))


def fit(cfg: TrainConfig, cbs: Iterable[Callback] = (), data: TaskData | None = None, run_dir: Path | None = None,
        resume: bool = False, checkpoint_every: int | None = None,
        on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train per the config on its engine, then score the final model once: the validation split, a temperature
    fitted on it, and the test split, read for the first time (train.result.final_scores).
    `on_epoch` gets each epoch's log (a dict) on either engine; `cbs` are Learner callbacks.

    Learner engine: with `run_dir`, a checkpoint is kept there (every epoch, every `checkpoint_every` steps, and
    on SIGINT or SIGTERM), and `resume=True` continues from it exactly. The fast engine has no callbacks,
    checkpoints or processes: it trains start to end (see train/fast.py).
    """
    data = data or load_task(cfg.task, cfg.data, cfg.valid_size, cfg.classes, cfg.valid_pct)
    if cfg.engine == "fast":
        if resume or checkpoint_every or distributed.world()[1] > 1 or list(cbs):
            raise ConfigError("the fast engine trains start to end in one process, without callbacks or "
                              "checkpoints; use engine learner to resume, checkpoint or train on several processes.")
        return FastTrainer(cfg, data, resolve_device(cfg.device)).run(cfg.seed, track=True, after_epoch=on_epoch)
    cbs = [*cbs, *([EpochLogs(on_epoch)] if on_epoch else [])]
    return fit_learner(cfg, cbs, data, run_dir, resume, checkpoint_every)


def fit_learner(cfg: TrainConfig, cbs: Iterable[Callback], data: TaskData, run_dir: Path | None, resume: bool,
                checkpoint_every: int | None) -> TrainResult:
    """The Learner engine: see `fit`."""
    rank, world_size, _ = distributed.world()
    device = resolve_device(cfg.device)
    if world_size > 1:
        device = distributed.init(device)
    ckpt = Path(run_dir) / CHECKPOINT_FILE if run_dir is not None else None
    extra = [Checkpointer(ckpt, checkpoint_every, cfg.to_dict(), write=rank == 0)] if ckpt else []
    learn = build_learner(cfg, data, device, [*extra, *cbs], rank, world_size)
    if resume:
        restore(learn, ckpt, cfg.to_dict())
    start = time.perf_counter()
    learn.fit(cfg.epochs, cfg.lr, validate=len(data.valid) > 0)
    seconds = time.perf_counter() - start
    rec = next(cb for cb in learn.cbs if isinstance(cb, Recorder))
    kept = learn.diverged is not None and ckpt is not None and ckpt.exists()
    if kept:
        restore_weights(learn.model, ckpt)  # the last good weights, not the NaNs
    if learn.diverged is not None:
        learn.diverged["kept_checkpoint"] = kept
    autocast = lambda: learn.precision.autocast(device.type)  # noqa: E731  (scored as it trained)
    scores, probs = final_scores(lambda split: inference.class_probs(learn.model, split.images, VALID_BS, cfg.tta,
                                                                        autocast, mirror=cfg.aug_flip), data)
    status = "diverged" if learn.diverged else "interrupted" if learn.interrupted else "finished"
    summary = summarize(cfg, learn.model, scores, rec.logs, seconds, device, data.classes, learn.precision, status,
                        learn.diverged, learn.interrupted)
    return TrainResult(cfg, learn.model, summary, rec.logs, rec.losses, rec.lrs, probs, data, learn)


def restore_weights(model: torch.nn.Module, ckpt: Path) -> None:
    """Only the model weights of a checkpoint."""
    tensors, _ = load_checkpoint(ckpt)
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})


def divergence_message(diverged: dict) -> str:
    kept = ("the weights of the last checkpoint before it were kept" if diverged.get("kept_checkpoint")
            else "no checkpoint had been written yet, so there are no good weights to keep")
    return (f"training diverged: the loss became {diverged['loss']} at epoch {diverged['epoch']}, step "
            f"{diverged['step']}. Lower the learning rate (try `digitlab lr-find` to choose one); {kept}.")
