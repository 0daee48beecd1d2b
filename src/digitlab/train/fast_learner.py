"""The fast engine as a Learner: the same fit, the same fit/epoch/train/validate events, callbacks, state_dict and
checkpoints as the chapter's Learner, with each training pass run by FastTrainer (train/fast.py).

Why no batch events: the fast engine's reason to exist is that nothing reads the device between steps (on a GPU
the step is one replay of a captured CUDA graph), so there is no point between batches at which a callback could
look. A callback that needs every batch (augmentation, a schedule, gradient clipping) is refused when `fit`
starts, naming it; callbacks that only *also* use batch events (progress, recording, TensorBoard, checkpoints,
the NaN guard: `batch_events_optional`) work per epoch here, and read the pass's per-batch losses and learning
rates from `batch_losses` and `batch_lrs`, set before `after_train`. Checkpoints and signals act at epoch ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .callback import Callback
from .fast import FastTrainer
from .learner import Learner

BATCH_EVENTS = ("before_batch", "after_predict", "after_loss", "after_backward", "after_step", "after_batch",
                "cleanup_batch")


@dataclass
class Steps:
    """What a pass is to callbacks that count batches (progress bars, schedules' step offsets): its length."""
    n: int
    device: object = None

    def __len__(self) -> int:
        return self.n


@dataclass
class FastPasses:
    """The Learner's `dls` on the fast engine: the data lives in the trainer; only the passes' lengths show."""
    train: Steps
    valid: Steps


def batch_hooks(cb: Callback) -> list[str]:
    """The batch events `cb` defines itself."""
    return [name for name in BATCH_EVENTS if hasattr(cb, name)]


class FastLearner(Learner):
    """A Learner whose training pass is `trainer`'s epoch and whose validation pass is its on-device scoring;
    `seed` draws the weights, the data order and the augmentation, as FastTrainer.run(seed) does.

    Attributes beyond the Learner's: trainer, seed, batch_losses (the pass's per-batch losses, a device tensor)
    and batch_lrs (their learning rates), set after each training pass, before after_train."""

    def __init__(self, trainer: FastTrainer, seed: int, cbs=(), n_epochs: int | None = None):
        steps = trainer.steps_per_epoch
        valid_batches = -(-len(trainer.y_valid) // 2000)
        super().__init__(trainer.model, FastPasses(Steps(steps, trainer.device), Steps(valid_batches, trainer.device)),
                         loss_func=None, lr=trainer.cfg.lr, cbs=cbs, opt_func=lambda params, lr: trainer.opt,
                         precision=trainer.precision)
        self.trainer, self.seed, self.batch_losses, self.batch_lrs = trainer, seed, None, []
        trainer.prepare(seed, n_epochs or trainer.cfg.epochs)  # fresh weights, before a checkpoint may load over them

    def fit(self, n_epochs: int = 1, lr: float | None = None, cbs=(), train: bool = True, validate: bool = True,
            reset_opt: bool = False) -> "Learner":
        """Learner.fit, after refusing callbacks that need batch events (see the module docstring)."""
        if lr is not None or reset_opt:
            raise ConfigError("the fast engine's learning rate follows its one-cycle schedule from the config; "
                              "set lr in the config (or use engine learner for fit(lr=...)).")
        for cb in [*self.cbs, *cbs]:
            hooks = batch_hooks(cb)
            if hooks and not getattr(cb, "batch_events_optional", False):
                raise ConfigError(f"{type(cb).__name__} hooks into every batch ({', '.join(hooks)}), but the fast "
                                  f"engine runs an epoch's steps without stopping between them (nothing reads the "
                                  f"device mid-epoch; on a GPU it is one CUDA graph replay per step). Use engine "
                                  f"learner for this callback, or make it act at epoch ends.")
        if n_epochs != self.trainer.n_epochs:
            raise ConfigError(f"this fast learner was prepared for {self.trainer.n_epochs} epochs (its one-cycle "
                              f"schedule spans them); fit({self.trainer.n_epochs}) runs them.")
        return super().fit(n_epochs, cbs=cbs, train=train, validate=validate)

    def one_pass(self, training: bool) -> None:
        """One epoch of the trainer, or its validation scores; the log gets the same entries as the Learner's."""
        self.training, self.n_iter = training, len(self.dls.train if training else self.dls.valid)
        self.model.train(training)
        if training:
            if self.resume_at is not None and self.resume_at["iter"]:
                raise ConfigError("this checkpoint stopped mid-epoch (the Learner engine's --checkpoint-every); "
                                  "resume it with --engine learner, or from an epoch's end.")
            self.resume_at = None  # continued: from here on state_dict() is this fit's own position
            epoch, spe = self.epochs_before + self.epoch, self.trainer.steps_per_epoch
            self.trainer.train_epoch(epoch)
            self.iter, self.iters_done, self.count = spe - 1, spe, spe * self.trainer.cfg.bs
            self.batch_losses = self.trainer.step_losses.clone()
            self.batch_lrs = [lr for lr, _ in self.trainer.schedule[epoch * spe:(epoch + 1) * spe]]
            self.pct_train = (self.epoch + 1) / self.n_epochs
            self.log["train_loss"] = self.trainer.epoch_loss()
        else:
            self.log.update(self.trainer.validate())
        self.callback("after_pass")
