"""Our losses against PyTorch's."""

import pytest
import torch
import torch.nn.functional as F

from benchmarks.chapter import mnist_loss as book_mnist_loss  # the book's form, as the baseline runs it
from digitlab.train.losses import cross_entropy, log_softmax, mnist_loss, softmax


def test_mnist_loss_is_distance_of_sigmoid_from_target():
    preds, targets = torch.tensor([[0.0], [2.0], [-2.0]]), torch.tensor([[1.0], [1.0], [0.0]])
    expected = torch.stack([1 - torch.sigmoid(preds[0]), 1 - torch.sigmoid(preds[1]), torch.sigmoid(preds[2])]).mean()
    assert torch.allclose(mnist_loss(preds, targets), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.bool])
def test_mnist_loss_equals_the_books_form_bit_for_bit(dtype):
    """Ours is |target - sigmoid|; the book's is torch.where(target == 1, 1 - sigmoid, sigmoid). Equal values and
    equal gradients, exactly, also where the sigmoid saturates to 0 or 1 (logits of +-100, with either target)."""
    torch.manual_seed(0)
    logits = torch.cat([torch.randn(252, 1) * 4, torch.tensor([[100.0], [100.0], [-100.0], [-100.0]])])
    targets = torch.cat([torch.rand(252, 1) > 0.5, torch.tensor([[True], [False], [True], [False]])]).to(dtype)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours, book = mnist_loss(a, targets), book_mnist_loss(b, targets)
    ours.backward(), book.backward()
    assert torch.equal(ours, book)
    assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("scale", [1.0, 100.0, 1e4])
def test_log_softmax_and_cross_entropy_match_pytorch_even_for_huge_logits(scale):
    torch.manual_seed(0)
    logits = (torch.randn(64, 10) * scale).requires_grad_()
    targets = torch.randint(0, 10, (64,))
    assert torch.allclose(log_softmax(logits), F.log_softmax(logits, -1), atol=1e-4)
    assert torch.allclose(softmax(logits), F.softmax(logits, -1), atol=1e-6)
    ours, theirs = cross_entropy(logits, targets), F.cross_entropy(logits, targets)
    assert torch.isfinite(ours) and torch.allclose(ours, theirs, rtol=1e-5, atol=1e-4)
    g_ours, = torch.autograd.grad(ours, logits)
    g_theirs, = torch.autograd.grad(theirs, logits)
    assert torch.allclose(g_ours, g_theirs, atol=1e-6)


def test_label_smoothing_matches_pytorch():
    torch.manual_seed(1)
    logits, targets = torch.randn(32, 10), torch.randint(0, 10, (32,))
    assert torch.allclose(cross_entropy(logits, targets, 0.1), F.cross_entropy(logits, targets, label_smoothing=0.1), atol=1e-6)
