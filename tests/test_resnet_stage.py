"""The fastai-style resnet18 stage: fastai's head, its init, the exact speed-ups, the optimizer, a real short run."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from digitlab.chapter.resnet_stage import fastai_adam, stage_resnet18
from digitlab.chapter.stages import ChapterData
from digitlab.data.mnist import Split, as_xy
from digitlab.data.tasks import to_input
from digitlab.models import build_model, n_params
from digitlab.models.resnet import SmallConv2d, fastai_head, resnet18_fastai, trim_dead_taps


@pytest.fixture(scope="module")
def xb(mnist):
    return to_input(mnist["valid"].images[:32])


def test_fastai_head_layers_shapes_and_init():
    """create_head(512 * 2, 2): concat pool, flatten, BN(1024), dropout .25, linear 1024->512 (no bias), ReLU,
    BN(512), dropout .5, linear 512->2 (no bias); kaiming-normal linears, BatchNorm weight 1 and bias 1e-3."""
    torch.manual_seed(0)
    head = fastai_head(512, 2)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["AdaptiveConcatPool2d", "Flatten", "BatchNorm1d", "Dropout", "Linear", "ReLU", "BatchNorm1d",
                     "Dropout", "Linear"]
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.25, 0.5]
    lins = [m for m in head if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in lins] == [(512, 1024), (2, 512)] and all(m.bias is None for m in lins)
    assert lins[0].weight.std().item() == pytest.approx(math.sqrt(2 / 1024), rel=0.02)
    for bn in (m for m in head if isinstance(m, nn.BatchNorm1d)):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.full_like(bn.bias, 1e-3))
    x = torch.randn(8, 512, 1, 1)
    pooled = head[0](torch.randn(8, 512, 3, 3))
    assert pooled.shape == (8, 1024)
    assert head.eval()(x).shape == (8, 2)


def test_concat_pool_is_max_then_mean():
    x = torch.randn(4, 6, 3, 3)
    assert torch.equal(fastai_head(6, 2)[0](x), torch.cat([x.amax((2, 3)), x.mean((2, 3))], 1))


def test_model_is_torchvision_resnet18_body_with_fastai_head(xb):
    """torchvision's resnet18 without its fc (11,689,512 - 513,000) plus the head (BN 2048 + 524,288 + BN 1024
    + 1024); its convs are kaiming-normal by fan-out, and the registry builds the trimmed one."""
    torch.manual_seed(0)
    full = resnet18_fastai(2, trim=False)
    assert n_params(full) == 11_689_512 - 513_000 + 2048 + 1024 * 512 + 1024 + 512 * 2 == 11_704_896
    conv = full.blocks[6].convs[1][0]  # 512 -> 512, 3x3
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)
    assert full.stem[2][0].in_channels == 3 and full.stem[2][0].kernel_size == (7, 7)
    trimmed = build_model("resnet18_fastai", 2)
    assert n_params(trimmed) == 4_758_080 and trimmed(xb).shape == (32, 2)


def test_stem_without_max_pool_gives_the_first_stage_14_pixels(xb):
    """stem_pool=False (a variant measured in benchmarks/NOTES.md): the stages run at 14, 7, 4 and 2 pixels, so no
    3x3 tap of the last stage is dead and the trimmed model keeps them all (more parameters than the default)."""
    torch.manual_seed(0)
    model = resnet18_fastai(2, stem_pool=False)
    sizes = []
    hooks = [b.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[-1])) for b in model.blocks]
    assert model.eval()(xb).shape == (32, 2)
    for h in hooks:
        h.remove()
    assert sizes == [14, 14, 14, 7, 7, 4, 4, 2]
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.stem.modules())
    assert n_params(model) > n_params(resnet18_fastai(2))


def test_head_dropout_and_weight_decay_are_cnn_learners_knobs():
    """ps sets both head dropouts as fastai's (ps/2, ps); wd reaches the decayed group only (no wd on BatchNorm)."""
    assert [m.p for m in resnet18_fastai(2, ps=0.0).head if isinstance(m, nn.Dropout)] == [0.0, 0.0]
    assert [m.p for m in resnet18_fastai(2, ps=0.2).head if isinstance(m, nn.Dropout)] == [0.1, 0.2]
    opt = fastai_adam(resnet18_fastai(2).parameters(), 0.1, wd=0.1)
    assert [g["wd"] for g in opt.param_groups] == [0.1, 0.0]


def test_trimmed_model_computes_the_same_function_and_gradients(xb):
    """The taps cut by trim_dead_taps only ever meet padding on 28x28 images: outputs and the gradients of every
    kept weight match the full model's."""
    torch.manual_seed(0)
    full = resnet18_fastai(2, trim=False)
    trimmed = trim_dead_taps(resnet18_fastai(2, trim=False), xb[:2])
    with torch.no_grad():  # give the trimmed model the full model's weights, sliced
        for (name, p), q in zip(full.named_parameters(), trimmed.parameters()):
            if p.shape != q.shape:
                a = (p.shape[-1] - q.shape[-1]) // 2 if name != "blocks.6.convs.0.0.weight" else 1
                q.copy_(p[:, :, a:a + q.shape[-1], a:a + q.shape[-1]])
            else:
                q.copy_(p)
    full.eval(), trimmed.eval()  # no dropout, so both see the same function
    out_full, out_trim = full(xb), trimmed(xb)
    assert torch.allclose(out_full, out_trim, atol=1e-5)
    out_full.sum().backward(), out_trim.sum().backward()
    for (name, p), q in zip(full.named_parameters(), trimmed.parameters()):
        g = p.grad if p.shape == q.shape else None
        if g is None:
            a = (p.shape[-1] - q.shape[-1]) // 2 if name != "blocks.6.convs.0.0.weight" else 1
            g = p.grad[:, :, a:a + q.shape[-1], a:a + q.shape[-1]]
            rest = p.grad.clone()
            rest[:, :, a:a + q.shape[-1], a:a + q.shape[-1]] = 0
            assert torch.count_nonzero(rest) == 0, f"{name}: a cut tap had a gradient"
        assert torch.allclose(g, q.grad, atol=1e-4, rtol=1e-4), name


@pytest.mark.parametrize("c_in,c_out,k,stride,size", [(8, 16, 3, 1, 4), (8, 16, 3, 1, 2), (8, 16, 3, 2, 7),
                                                      (8, 16, 3, 2, 4), (8, 16, 1, 2, 2), (8, 16, 1, 1, 1),
                                                      (8, 16, 2, 1, 2), (8, 16, 3, 1, 7)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_small_conv_equals_conv2d_forward_and_backward(c_in, c_out, k, stride, size, channels_last):
    torch.manual_seed(0)
    pad = k // 2 if k != 2 else 0
    conv = SmallConv2d(c_in, c_out, k, stride, pad, bias=True)
    x = torch.randn(5, c_in, size, size)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y = conv(x)
    ref = F.conv2d(x, conv.weight, conv.bias, stride, pad)
    assert y.shape == ref.shape and torch.allclose(y, ref, atol=1e-5)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(y, (x, conv.weight, conv.bias), g)
    want = torch.autograd.grad(ref, (x, conv.weight, conv.bias), g)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-4)


def test_adam_has_fastai_defaults_and_no_decay_on_batchnorm():
    model = resnet18_fastai(2)
    opt = fastai_adam(model.parameters(), 0.1)
    decay, no_decay = opt.param_groups
    assert (decay["mom"], decay["sqr_mom"], decay["eps"], decay["wd"], decay["decouple_wd"]) == (0.9, 0.99, 1e-5,
                                                                                                  0.01, True)
    assert no_decay["wd"] == 0.0 and all(p.ndim == 1 for p in no_decay["params"])
    bn_params = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for p in m.parameters()}
    assert {id(p) for p in no_decay["params"]} == bn_params
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.mark.slow
def test_stage_trains_one_cycle_on_a_slice_of_the_3s_and_7s():
    """The stage end to end on 6144 training and every other validation image: one epoch of 96 batches of 64."""
    full = ChapterData.load()
    g = torch.Generator().manual_seed(0)
    ti, vi = torch.randperm(len(full.train.labels), generator=g)[:6144], torch.arange(0, 2038, 2)
    tr = Split(full.train.images[ti], full.train.labels[ti])
    va = Split(full.valid.images[vi], full.valid.labels[vi])
    small = ChapterData(tr, va, *as_xy(tr, 3), *as_xy(va, 3))
    res = stage_resnet18(small, seed=0)
    rec = res.extras["ce_recorder"]
    assert res.book == 0.9971 and res.epochs == 1 and len(res.history) == 1 and res.seconds > 0
    assert len(rec.lrs) == 6144 // 64 and rec.lrs[-1] == pytest.approx(1e-6, rel=0.05)  # fastai's final lr
    assert max(rec.lrs) == pytest.approx(0.1, rel=0.01)
    assert res.accuracy >= FLOOR, res.accuracy


# One epoch on a slice: seeds 0-2 scored 0.9745-0.9931 with AVX2 and AVX-512 dispatch at 1 and 2 threads; chance
# is 0.5, so 0.95 still catches a stage that does not learn.
FLOOR = 0.95
