"""Each data set's default recipe (data.catalogue): what plain `digitlab train` resolves to, and how flags, config
files and Learner-only choices combine with it."""

import numpy as np
import pytest
import torch
from test_datasets import fashion  # noqa: F401 (the Fashion-MNIST fixture: skipped where missing, failed under CI)

from digitlab.config import TrainConfig
from digitlab.data.catalogue import FASHION_MNIST, MNIST, default_recipe, known_set_at
from digitlab.data.idx import write_idx
from digitlab.errors import ConfigError
from digitlab.hardware import auto_precision
from digitlab.inference import TTA_SHIFTS, class_probs, logits
from digitlab.recipe_table import fields_of


def test_mnist_default_is_the_fast_engine_recipe_and_flags_win():
    assert known_set_at(None) is MNIST and default_recipe(None) == MNIST.recipe == "default-mnist"
    plain = TrainConfig.resolve(None)
    epochs = 20 if auto_precision("cpu").name == "bf16" else 12  # 12 where the CPU trains in fp32 (catalogue)
    assert (plain.engine, plain.epochs, plain.tta, plain.aug_flip) == ("fast", epochs, True, False)
    assert default_recipe(None, fp32_cpu=True) == "default-mnist-fp32-cpu"
    assert fields_of("default-mnist-fp32-cpu") == {**fields_of("default-mnist"), "epochs": 12}  # the epochs alone
    assert TrainConfig.resolve(None, precision="fp32", device="cpu").epochs == 12
    assert TrainConfig.resolve(None, precision="bf16", device="cpu").epochs == 20
    assert TrainConfig.resolve(None, epochs=3, tta=False).epochs == 3
    assert TrainConfig.resolve(None, tta=False).tta is False
    assert TrainConfig.resolve(None, engine="learner").engine == "learner"


def test_learner_only_choices_take_the_learner_and_an_explicit_fast_engine_is_refused():
    assert TrainConfig.resolve(None, opt="adam").engine == "learner"
    assert TrainConfig.resolve(None, schedule="constant").engine == "learner"
    assert TrainConfig.resolve(None, needs_learner=True).engine == "learner"  # checkpoints, several processes
    with pytest.raises(ConfigError, match="fast engine trains with one-cycle SGD"):
        TrainConfig.resolve(None, opt="adam", engine="fast")


def test_the_books_task_and_unknown_sets_keep_train_configs_defaults(tmp_path):
    assert TrainConfig.resolve(None, task="3v7") == TrainConfig(task="3v7")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 300), ("t10k", 100)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 4)
    assert known_set_at(tmp_path) is None and default_recipe(tmp_path) is None
    assert TrainConfig.resolve(None, data=str(tmp_path)) == TrainConfig(data=str(tmp_path))
    assert known_set_at(tmp_path / "missing") is None


def test_fashion_mnist_default_mirrors_images_in_training_and_at_test_time(fashion):
    assert known_set_at(fashion) is FASHION_MNIST
    cfg = TrainConfig.resolve(None, data=str(fashion))
    assert (cfg.engine, cfg.aug_flip, cfg.tta, cfg.epochs) == ("fast", True, True, 30)
    assert cfg.aug_degrees < TrainConfig().aug_degrees  # clothes are photographed upright


def test_mirror_tta_averages_every_shift_and_its_mirror_image(mnist):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    images = mnist["valid"].images[:64]
    views = [torch.softmax(logits(model, images, 32, s, mirror=m), 1) for s in TTA_SHIFTS for m in (False, True)]
    expected = torch.stack(views).mean(0)
    assert torch.allclose(class_probs(model, images, 32, tta=True, mirror=True), expected, atol=1e-6)
    assert torch.allclose(class_probs(model, images, 32, tta=False, mirror=True), views[0], atol=1e-6)
    assert not torch.allclose(views[0], views[1], atol=1e-3)  # a mirror image is a different input


def test_every_known_sets_recipe_is_in_the_one_recipe_table_and_runs_by_name():
    from digitlab.recipe_table import RECIPES
    from digitlab.recipes import get_recipe

    for known in (MNIST, FASHION_MNIST):
        for name in filter(None, (known.recipe, known.fp32_cpu)):
            assert name in RECIPES and get_recipe(name).config == fields_of(name)
    assert get_recipe("default-mnist").train_config(device="cpu", precision="bf16") == \
        TrainConfig.resolve(None, precision="bf16", device="cpu")
