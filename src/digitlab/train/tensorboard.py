"""TensorBoard event files, written with PyTorch's own SummaryWriter (the optional `tensorboard` extra): per-step
loss and learning rate, per-epoch metrics, then the hyperparameters with the final metrics and the figures.
`tensorboard --logdir runs` shows every run folder's `tensorboard/` side by side.

Scalars are written in double precision (`new_style`), so a value read back equals the one in metrics.csv.
Without the extra, training works as before and `writer_or_none` says once how to get the event files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from .callback import Callback
from .callbacks import current_lr

_told = False


def available() -> bool:
    """Whether the `tensorboard` package (which SummaryWriter needs) can be imported."""
    try:
        import tensorboard  # noqa: F401  # deferred: about a second, and only to know whether it is there
    except ImportError:
        return False
    return True


class RunWriter:
    """One run's event files in `log_dir`: what each engine reports, in one vocabulary of tags."""

    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter  # deferred: imports tensorboard (about a second)

        self.log_dir = Path(log_dir)
        self.tb = SummaryWriter(str(self.log_dir))

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.tb.add_scalar(tag, float(value), step, new_style=True, double_precision=True)

    def epoch(self, log: dict) -> None:
        """One epoch's results (the row metrics.csv gets), as `epoch/<name>` at step = epoch."""
        for name, value in log.items():
            if name != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.scalar(f"epoch/{name}", value, log["epoch"])
        self.tb.flush()

    def steps(self, name: str, values: list[float], first_step: int = 0) -> None:
        """Per-step values (`step/loss`, `step/lr`) from training step `first_step` on."""
        for i, value in enumerate(values):
            self.scalar(f"step/{name}", value, first_step + i)
        self.tb.flush()

    def hparams(self, config: dict, metrics: dict) -> None:
        """The config (scalars as they are, anything else as text) beside the final metrics, for the HParams tab."""
        hp = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.items()}
        self.tb.add_hparams(hp, {f"hparam/{k}": float(v) for k, v in metrics.items() if v is not None},
                            run_name=".")

    def history(self, history: list[dict], batch_losses: list[float], lrs: list[float]) -> None:
        """A finished run's whole record at once, for runs that were not logged live."""
        for log in history:
            self.epoch(log)
        self.steps("loss", batch_losses)
        self.steps("lr", lrs)

    def figure(self, tag: str, fig) -> None:
        self.tb.add_figure(tag, fig)

    def close(self) -> None:
        self.tb.close()


def writer_or_none(log_dir: str | Path) -> RunWriter | None:
    """A RunWriter for `log_dir`, or None (saying once per process how to get one) without the extra."""
    global _told
    if available():
        return RunWriter(log_dir)
    if not _told:  # a note, not a warning: nothing is wrong with the run
        print("note: TensorBoard event files are not written; `pip install 'digitlab[tensorboard]'` adds them "
              "(then `tensorboard --logdir runs`).", file=sys.stderr)
        _told = True
    return None


class TensorBoardLog(Callback):
    """The live log of either engine: each epoch, that epoch's per-step loss and learning rate, then its metrics.
    Losses are kept on the device during the epoch and read once at its end (no sync per batch)."""
    order = 55  # after the Recorder, before progress printing
    batch_events_optional = True  # the fast engine hands over a pass's losses and rates at once (after_train)

    def __init__(self, writer: RunWriter):
        self.writer, self.losses, self.lrs = writer, [], []

    def before_epoch(self, learn):
        self.losses, self.lrs, self.first = [], [], learn.epoch * len(learn.dls.train)

    def after_batch(self, learn):
        if learn.training:
            self.losses.append(learn.loss.detach())
            self.lrs.append(current_lr(learn.opt))

    def after_train(self, learn):
        if learn.batch_losses is not None:  # a pass without batch events (the fast engine)
            self.losses, self.lrs = list(learn.batch_losses.unbind()), list(learn.batch_lrs)

    def after_epoch(self, learn):
        if self.losses:
            self.writer.steps("loss", torch.stack(self.losses).float().cpu().tolist(), self.first)
            self.writer.steps("lr", self.lrs, self.first)
        self.writer.epoch(dict(learn.log))
