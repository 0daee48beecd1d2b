"""What the Learner and its extensions share: the Callback base and the cancel exceptions (fastai's callback core).

A callback defines methods named after the Learner's events (before_fit, after_batch, cleanup_epoch, ...); each
gets the Learner. Raising Cancel<level>Exception skips the rest of that level and its `after_` event; its
`cleanup_` event always runs. Schedules, lr_find, checkpoints and distributed training import these from here,
never from learner.py, so the Learner can import them without a cycle.
"""

from __future__ import annotations


class Callback:
    """Base class: define methods named after events; lower `order` runs first. A callback whose batch events
    are a refinement, not its job (progress, recording), says `batch_events_optional = True`: the fast engine,
    which has no batch events, then runs it per epoch (train/fast_learner.py)."""
    order = 0
    batch_events_optional = False


class CancelFitException(Exception):
    """Stop training now; after_fit is skipped, cleanup_fit runs."""


class CancelEpochException(Exception):
    """Skip the rest of this epoch."""


class CancelTrainException(Exception):
    """Skip the rest of this epoch's training pass."""


class CancelValidateException(Exception):
    """Skip the rest of this epoch's validation pass."""


class CancelBatchException(Exception):
    """Skip the rest of this batch."""


CANCEL = {"fit": CancelFitException, "epoch": CancelEpochException, "train": CancelTrainException,
          "validate": CancelValidateException, "batch": CancelBatchException}
