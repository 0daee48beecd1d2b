"""TrainConfig refuses every out-of-range setting with a ConfigError that names it, and a distributed run's
global batch must divide over its processes."""

from __future__ import annotations

import pytest
import torch

from digitlab.config import TrainConfig
from digitlab.data.mnist import Split
from digitlab.data.tasks import TaskData
from digitlab.errors import ConfigError
from digitlab.train.fit import build_dls

# (setting, the first value refused, the message) for each check of TrainConfig.__post_init__
REFUSED = [
    ({"task": "fashion"}, "task must be one of 3v7, digits, got 'fashion'."),
    ({"model": "vgg"}, "model must be one of "),
    ({"epochs": 0}, "epochs must be at least 1, got 0."),
    ({"lr": 0.0}, "lr must be positive, got 0.0."),
    ({"lr": -0.1}, "lr must be positive, got -0.1."),
    ({"bs": 0}, "bs must be at least 1, got 0."),
    ({"opt": "rmsprop"}, "opt must be sgd, adam or adamw, got 'rmsprop'."),
    ({"mom": -0.01}, "mom must be in [0, 1), got -0.01."),
    ({"mom": 1.0}, "mom must be in [0, 1), got 1.0."),
    ({"wd": -1e-4}, "wd must be >= 0, got -0.0001."),
    ({"schedule": "cosine"}, "schedule must be one_cycle or constant, got 'cosine'."),
    ({"label_smoothing": -0.1}, "label_smoothing must be in [0, 1), got -0.1."),
    ({"label_smoothing": 1.0}, "label_smoothing must be in [0, 1), got 1.0."),
    ({"aug_shift": -1.0}, "aug_shift, aug_degrees and aug_scale are strengths"),
    ({"valid_size": -1}, "valid_size must be 0 or more, got -1."),
    ({"engine": "turbo"}, "engine must be one of learner, fast, got 'turbo'."),
    ({"precision": "fp8"}, "precision must be one of auto, bf16, fp16, fp32, got 'fp8'."),
    ({"engine": "fast", "opt": "adam"}, "the fast engine trains with one-cycle SGD"),
]


@pytest.mark.parametrize("setting, message", REFUSED, ids=[",".join(f"{k}={v}" for k, v in s.items()) for s, _ in REFUSED])
def test_each_out_of_range_setting_is_refused_with_its_message(setting, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**setting)
    assert str(info.value).startswith(message), str(info.value)


def test_the_edges_of_each_range_are_accepted():
    """The last values inside each range, so the checks are not stricter than their messages say."""
    cfg = TrainConfig(task="3v7", model="linear", epochs=1, lr=1e-9, bs=1, opt="adamw", mom=0.0, wd=0.0,
                      schedule="constant", label_smoothing=0.0)
    assert cfg.to_dict()["bs"] == 1
    assert TrainConfig(mom=0.999, label_smoothing=0.999).mom == 0.999


def tiny_task(n: int = 96) -> TaskData:
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    labels = torch.arange(n) % 2
    return TaskData(Split(images, labels), Split(images[:10], labels[:10]), (3, 7))


@pytest.mark.parametrize("bs, world_size", [(33, 2), (64, 3), (10, 4)])
def test_a_global_batch_that_does_not_divide_over_the_processes_is_refused(bs, world_size):
    with pytest.raises(ConfigError, match=f"the batch size {bs} is the global batch and must divide evenly over "
                                          f"{world_size} processes; use a multiple of {world_size}"):
        build_dls(tiny_task(), TrainConfig(bs=bs), torch.device("cpu"), rank=0, world_size=world_size)


def test_a_global_batch_that_divides_gives_each_process_its_share():
    for world_size in (1, 2, 4):
        dls = build_dls(tiny_task(), TrainConfig(bs=32), torch.device("cpu"), rank=world_size - 1,
                        world_size=world_size)
        assert [len(yb) for _, yb in dls.train] == [32 // world_size] * 3
