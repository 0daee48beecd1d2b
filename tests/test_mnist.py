"""The splits cut from the real files: sizes and class counts as published."""

import torch

from digitlab.data import as_xy, mnist_sample

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_class_counts_match_the_published_ones(mnist):
    assert torch.bincount(mnist["train"].labels).tolist() == TRAIN_COUNTS
    assert torch.bincount(mnist["valid"].labels).tolist() == TEST_COUNTS


def test_mnist_sample_is_the_books_3s_and_7s():
    sample = mnist_sample()
    train, valid = sample["train"], sample["valid"]
    assert len(train) == 12396 and len(valid) == 2038
    assert train.labels[:6131].eq(3).all() and train.labels[6131:].eq(7).all()  # threes stacked first
    x, y = as_xy(train, positive=3)
    assert x.shape == (12396, 784) and y.shape == (12396, 1)
    assert 0 <= x.min() and x.max() <= 1 and y.sum() == 6131
