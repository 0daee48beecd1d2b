"""Batch augmentation: shapes, determinism under a seed, real changes, and the Learner hook."""

import math

import pytest
import torch
import torch.nn.functional as F

from digitlab.data import DataLoader, DataLoaders
from digitlab.data.augment import augment_batch, random_affine
from digitlab.data.tasks import to_input
from digitlab.train.callback import Callback
from digitlab.train.callbacks import BatchAugment
from digitlab.train.learner import Learner
from digitlab.train.losses import cross_entropy


@pytest.fixture(scope="module")
def batch(mnist):
    return to_input(mnist["train"].images[:64])  # (64, 1, 28, 28) float in [0, 1]


def test_shape_dtype_and_range(batch):
    out = augment_batch(batch, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out.dtype == batch.dtype and out.device == batch.device
    assert out.min() >= 0 and out.max() <= 1 + 1e-6


def test_same_seed_same_batch_other_seed_other_batch(batch):
    a = augment_batch(batch, torch.Generator().manual_seed(7))
    b = augment_batch(batch, torch.Generator().manual_seed(7))
    c = augment_batch(batch, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_it_changes_images_but_keeps_the_digit(batch):
    out = augment_batch(batch, torch.Generator().manual_seed(0))
    changed = (out - batch).abs().flatten(1).amax(1) > 0.1
    assert changed.float().mean() > 0.9  # nearly every image moved
    # the ink stays: a shift of 2 pixels, 10 degrees and 10% zoom neither crop nor wipe out a centred digit
    ratio = out.flatten(1).sum(1) / batch.flatten(1).sum(1)
    assert ratio.min() > 0.7 and ratio.max() < 1.35


def test_identity_parameters_reproduce_the_image(batch):
    g = torch.Generator().manual_seed(0)
    out = augment_batch(batch, g, shift=0.0, degrees=0.0, scale=0.0)
    assert torch.allclose(out, batch, atol=1e-5)


def test_a_pure_shift_moves_pixels_by_whole_pixels(batch):
    """The maps really are what they say: theta against a hand-built translation of +1 pixel in x."""
    theta = random_affine(4, torch.Generator().manual_seed(3), shift=2.0, degrees=0.0, scale=0.0)
    assert torch.allclose(theta[:, :, :2], torch.eye(2).expand(4, 2, 2))
    assert theta[:, :, 2].abs().max() <= 2 * 2 / 28 + 1e-7
    one_px = torch.tensor([[[1.0, 0, 2 / 28], [0, 1.0, 0]]])
    grid = F.affine_grid(one_px, [1, 1, 28, 28], align_corners=False)
    moved = F.grid_sample(batch[:1], grid, align_corners=False)
    assert torch.allclose(moved[0, 0, :, :-1], batch[0, 0, :, 1:], atol=1e-5)  # output x reads input x+1


def test_rotation_angle_and_zoom_stay_in_bounds():
    theta = random_affine(1000, torch.Generator().manual_seed(0), degrees=10.0, scale=0.1)
    a, b = theta[:, 0, 0], theta[:, 1, 0]  # cos/zoom, sin/zoom
    zoom, angle = 1 / torch.sqrt(a ** 2 + b ** 2), torch.atan2(b, a)
    assert angle.abs().max() <= math.radians(10) + 1e-6 and angle.abs().max() > math.radians(9)
    assert zoom.min() >= 0.9 - 1e-6 and zoom.max() <= 1.1 + 1e-6


class Capture(Callback):
    """Keeps the batch the model saw, for training and validation passes."""
    order = 30

    def __init__(self):
        self.seen = {True: [], False: []}

    def after_predict(self, learn):
        self.seen[learn.training].append(learn.xb.clone())


def fit_capture(batch, seed):
    y = torch.zeros(len(batch), dtype=torch.int64)
    dls = DataLoaders(DataLoader(batch, y, 32), DataLoader(batch, y, 32))  # unshuffled: batches are known
    cap = Capture()
    learn = Learner(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 2)), dls, cross_entropy,
                    cbs=[BatchAugment(seed=seed), cap])
    learn.fit(1, 0.0)
    return cap.seen


def test_callback_in_a_fit_augments_training_batches_only_reproducibly(batch):
    seen = fit_capture(batch, seed=5)
    assert [x.shape for x in seen[True]] == [(32, 1, 28, 28)] * 2
    assert not torch.equal(seen[True][0], batch[:32])
    assert torch.equal(seen[False][0], batch[:32]) and torch.equal(seen[False][1], batch[32:])
    again, other = fit_capture(batch, seed=5), fit_capture(batch, seed=6)
    assert all(torch.equal(a, b) for a, b in zip(seen[True], again[True]))
    assert not torch.equal(seen[True][0], other[True][0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_the_gpu_the_same_maps_as_on_the_cpu(batch):
    cpu = augment_batch(batch, torch.Generator().manual_seed(1))
    gpu = augment_batch(batch.cuda(), torch.Generator().manual_seed(1))
    assert gpu.is_cuda and torch.allclose(gpu.cpu(), cpu, atol=1e-4)


def test_flips_mirror_about_half_the_images_and_leave_the_other_draws_alone():
    plain = random_affine(400, torch.Generator().manual_seed(3))
    flipped = random_affine(400, torch.Generator().manual_seed(3), flip=True)
    sign = flipped[:, :, 0] / plain[:, :, 0]  # column 0 is negated for a mirrored image, all else equal
    assert torch.allclose(sign.abs(), torch.ones_like(sign)) and torch.equal(flipped[:, :, 1:], plain[:, :, 1:])
    mirrored = (sign[:, 0] < 0).float().mean()
    assert 0.4 < mirrored < 0.6


def test_a_flip_alone_is_an_exact_mirror_image(batch):
    out = augment_batch(batch, torch.Generator().manual_seed(0), shift=0, degrees=0, scale=0, flip=True)
    mirror = torch.tensor([torch.allclose(o, b.flip(-1), atol=1e-5) for o, b in zip(out, batch)])
    same = torch.tensor([torch.allclose(o, b, atol=1e-5) for o, b in zip(out, batch)])
    assert (mirror | same).all() and mirror.any() and same.any()
