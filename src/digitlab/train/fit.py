"""From a TrainConfig to a trained model: `fit` runs the config on its engine and scores the final model once.

Both engines are a Learner (the chapter's, or FastLearner: train/fast_learner.py) with the same callbacks:
recording, the NaN guard, checkpoints, progress, TensorBoard. Nothing here writes a run folder (digitlab.runs
does); with a `run_dir`, the checkpoint is kept there so that a run can be continued exactly.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from .. import inference
from ..config import TrainConfig, engine_reason
from ..data.loader import DataLoader, DataLoaders
from ..data.tasks import TaskData, load_task_for, to_input
from ..errors import ConfigError
from ..hardware import resolve_precision
from ..models.layers import set_normalization
from ..models.registry import build_model
from ..weights import starting_weights
from . import distributed
from .callback import Callback
from .callbacks import BatchAugment, NanGuard, Recorder
from .checkpoint import Checkpointer, load_checkpoint, restore
from .fast import FastTrainer
from .fast_learner import FastLearner
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
    model = set_normalization(build_model(cfg.model, len(data.classes)), data.mean, data.std)
    if cfg.init_from:  # fine-tuning
        model.load_state_dict(starting_weights(cfg.init_from, cfg.model, data.classes))
    model = model.to(device)
    cbs = [*standard_callbacks(cfg), *cbs]
    if world_size > 1:
        cbs.append(distributed.DataParallel())
    return Learner(model, build_dls(data, cfg, device, rank, world_size), loss_func(cfg), lr=cfg.lr, cbs=cbs,
                   opt_func=opt_func(cfg), metrics=[accuracy], precision=resolve_precision(cfg.precision, device))


class EpochLogs(Callback):
    """Hands each epoch's log to a function (a dict), on either engine."""
    order = 70

    def __init__(self, on_epoch: Callable[[dict], None]):
        self.on_epoch = on_epoch

    def after_epoch(self, learn):
        self.on_epoch(dict(learn.log))


def build_fast_learner(cfg: TrainConfig, data: TaskData, device: torch.device, cbs: Iterable[Callback] = ()
                       ) -> FastLearner:
    """The fast engine for a config: its own one-cycle schedule and augmentation, the standard recording and
    divergence guard as callbacks."""
    return FastLearner(FastTrainer(cfg, data, device), cfg.seed, [Recorder(), NanGuard(), *cbs])


def fit(cfg: TrainConfig, cbs: Iterable[Callback] = (), data: TaskData | None = None, run_dir: Path | None = None,
        resume: bool = False, checkpoint_every: int | None = None) -> TrainResult:
    """Train per the config on its engine, then score the final model once: the validation split, a temperature
    fitted on it, and the test split, read for the first time (train.result.final_scores). `cbs` are callbacks
    (on the fast engine, those that need every batch are refused: train/fast_learner.py).

    With `run_dir`, a checkpoint is kept there (every epoch, every `checkpoint_every` steps on the Learner engine,
    and on SIGINT or SIGTERM: at once on the Learner engine, at the epoch's end on the fast one), and
    `resume=True` continues from it exactly.
    """
    data = data or load_task_for(cfg)
    rank, world_size, _ = distributed.world()
    device = resolve_device(cfg.device)
    if cfg.engine == "fast" and world_size > 1:
        raise ConfigError("the fast engine trains in one process (its data and step live on one device); use "
                          "--engine learner to train on several processes.")
    if world_size > 1:
        device = distributed.init(device)
    ckpt = Path(run_dir) / CHECKPOINT_FILE if run_dir is not None else None
    extra = [Checkpointer(ckpt, checkpoint_every, cfg.to_dict(), write=rank == 0)] if ckpt else []
    if cfg.engine == "fast":
        if checkpoint_every and rank == 0:
            print(f"note: the fast engine has no point within an epoch to stop at, so --checkpoint-every "
                  f"{checkpoint_every} checkpoints at each epoch's end; --engine learner checkpoints within epochs.",
                  file=sys.stderr)
        learn = build_fast_learner(cfg, data, device, [*extra, *cbs])
        probs_of = lambda split: learn.trainer.probs(split, cfg.tta)  # noqa: E731
    else:
        learn = build_learner(cfg, data, device, [*extra, *cbs], rank, world_size)
        autocast = lambda: learn.precision.autocast(device.type)  # noqa: E731  (scored as it trained)
        probs_of = lambda split: inference.class_probs(learn.model, split.images, VALID_BS, cfg.tta,  # noqa: E731
                                                       autocast, mirror=cfg.aug_flip)
    if resume:
        restore(learn, ckpt, cfg.to_dict())
    start = time.perf_counter()
    learn.fit(cfg.epochs, validate=len(data.valid) > 0)
    seconds = time.perf_counter() - start
    rec = next(cb for cb in learn.cbs if isinstance(cb, Recorder))
    kept = learn.diverged is not None and ckpt is not None and ckpt.exists()
    if kept:
        restore_weights(learn.model, ckpt)  # the last good weights, not the NaNs
    if learn.diverged is not None:
        learn.diverged["kept_checkpoint"] = kept
    scores, probs = final_scores(probs_of, data)
    status = "diverged" if learn.diverged else "interrupted" if learn.interrupted else "finished"
    summary = summarize(cfg, learn.model, scores, rec.logs, seconds, device, data.classes, learn.precision, status,
                        learn.diverged, learn.interrupted)
    summary["engine_reason"] = engine_reason(cfg, world_size)
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
