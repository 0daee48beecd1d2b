"""Speedrun: the clock stops at the first evaluation that reaches the target, and the fit ends there."""

from digitlab.config import TrainConfig
from digitlab.speedrun import StopAtTarget
from digitlab.train.trainer import fit

from test_cli import digitlab


def test_training_stops_at_the_first_epoch_that_reaches_the_target():
    stop = StopAtTarget(0.95)
    result = fit(TrainConfig(task="3v7", model="linear", epochs=5, augment=False), cbs=[stop])
    assert stop.reached_at is not None and stop.accuracy >= 0.95
    assert result.summary["epochs_done"] == 1 < 5  # reached after the first epoch, so the other four never ran
    never = StopAtTarget(1.01)
    fit(TrainConfig(task="3v7", model="linear", epochs=2, augment=False), cbs=[never])
    assert never.reached_at is None


def test_unknown_target_is_a_clear_error():
    proc = digitlab("speedrun", "--target", "0.5", check=False)
    assert proc.returncode == 2 and "no speedrun recipe for target 0.5" in proc.stderr
