"""Image models: shapes, topology, explicit initialisation, saved-weights round trip, and a short real training."""

import math

import pytest
import torch
from torch import nn

from digitlab.data.tasks import to_input
from digitlab.models import MODELS, BasicBlock, build_model, fastcnn, init_weights, n_params, resnet18
from digitlab.weights import load_model, save_model

NEW_MODELS = ["fastcnn", "fastcnn_wide", "fastcnn_deep", "convnet5x5", "resnet18", "resnet18_fastai"]


@pytest.fixture(scope="module")
def xb(mnist):
    return to_input(mnist["valid"].images[:16])


@pytest.mark.parametrize("name", NEW_MODELS)
@pytest.mark.parametrize("n_classes", [2, 10])
def test_registered_models_map_images_to_class_scores(name, n_classes, xb):
    torch.manual_seed(0)
    model = build_model(name, n_classes)
    out = model(xb)
    assert out.shape == (16, n_classes) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_existing_models_are_unchanged():
    """Shipped weights depend on these four architectures; their parameter counts are pinned."""
    assert {k: n_params(MODELS[k](n_classes=10)) for k in ("linear", "simple_net", "mlp", "cnn")} == \
        {"linear": 7850, "simple_net": 23860, "mlp": 235146, "cnn": 94186}


def test_convnet5x5_is_the_papers_m5(xb):
    """Five unpadded 5x5 convs (no bias) of 32-160 channels shrink 28 to 8 pixels; 160*8*8 -> 10 without bias,
    then BatchNorm1d: 25*(32 + 32*64 + 64*96 + 96*128 + 128*160) conv weights + 2*(32+64+96+128+160) BN
    + 10240*10 + 2*10."""
    model = build_model("convnet5x5")
    assert n_params(model) == 25 * 40992 + 2 * 480 + 102400 + 20 == 1_128_180
    sizes = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
    model(xb)
    assert sizes == [(32, 24, 24), (64, 20, 20), (96, 16, 16), (128, 12, 12), (160, 8, 8)]


def test_resnet18_has_the_standard_topology():
    """torchvision's resnet18 has 11,689,512 parameters; ours differs only in the stem and the head:
    - fc 512*1000+1000 + 5130 (10 classes); - conv1 3*64*7*7 and bn1 128; + our stem: conv 1->32 3x3 (288),
    BN 64, conv 32->64 3x3 (18432), BN 128."""
    expected = 11_689_512 - 513_000 + 5130 - 9408 - 128 + 288 + 64 + 18432 + 128
    model = resnet18(10)
    assert n_params(model) == expected == 11_191_018
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    assert [b.convs[0][0].out_channels for b in blocks] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [b.convs[0][0].stride[0] for b in blocks] == [1, 1, 2, 1, 2, 1, 2, 1]
    assert [isinstance(b.shortcut, nn.Identity) for b in blocks] == [True, True, False, True, False, True, False, True]


def test_resnet18_stages_run_at_14_7_4_2_pixels(xb):
    sizes = []
    model = resnet18(10)
    for b in model.blocks:
        b.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
    model(xb)
    assert sizes == [(64, 14, 14)] * 2 + [(128, 7, 7)] * 2 + [(256, 4, 4)] * 2 + [(512, 2, 2)] * 2


def test_init_is_kaiming_normal_with_zero_biases_and_identity_batchnorm():
    torch.manual_seed(0)
    model = resnet18(10)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.numel() > 100_000:
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            assert m.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)
            assert abs(m.weight.mean().item()) < 0.05 * math.sqrt(2 / fan_in)
    fc = model.head[-1]
    assert torch.equal(fc.bias, torch.zeros(10))
    branch_ends = {id(b.convs[-1][1]) for b in model.blocks}
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            expected = torch.zeros_like(m.weight) if id(m) in branch_ends else torch.ones_like(m.weight)
            assert torch.equal(m.weight, expected) and torch.equal(m.bias, torch.zeros_like(m.bias))


def test_init_weights_against_torch_kaiming_normal():
    """init_weights draws exactly what torch.nn.init.kaiming_normal_(nonlinearity='relu') draws."""
    a, b = nn.Conv2d(64, 128, 3), nn.Conv2d(64, 128, 3)
    torch.manual_seed(3)
    init_weights(a)
    torch.manual_seed(3)
    nn.init.kaiming_normal_(b.weight, mode="fan_in", nonlinearity="relu")
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, torch.zeros(128))


def test_untrained_identity_block_is_relu_of_its_input():
    """Zero-initialised last BN of each residual branch: the block starts as the identity (then ReLU)."""
    block = BasicBlock(8, 8).apply(init_weights)
    block.convs[-1][1].weight.data.zero_()
    x = torch.randn(4, 8, 7, 7)
    assert torch.equal(block.eval()(x), torch.relu(x))


def test_fastcnn_is_channels_last_and_round_trips_through_safetensors(tmp_path, xb):
    torch.manual_seed(0)
    model = fastcnn(10).eval()
    conv = model[2][0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    path = save_model(model, tmp_path / "m.safetensors", {"model": "fastcnn", "classes": list(range(10))})
    loaded, meta = load_model(path)
    assert meta["model"] == "fastcnn" and torch.equal(loaded(xb), model(xb))


@pytest.mark.slow
def test_short_training_run_clears_an_accuracy_floor(mnist):
    """fastcnn, one epoch over 24000 training images (188 steps), one-cycle, no augmentation, scored on the 10000
    test images: measured 0.9838 (seed 0, 2 CPU cores); the floor leaves room for other CPUs' arithmetic."""
    from digitlab.config import TrainConfig
    from digitlab.data.tasks import TaskData
    from digitlab.data.mnist import Split
    from digitlab.train.fit import fit

    tr = mnist["train"]
    data = TaskData(Split(tr.images[:24000], tr.labels[:24000]), mnist["valid"], tuple(range(10)))
    cfg = TrainConfig(task="digits", model="fastcnn", epochs=1, lr=0.1, bs=128, augment=False, label_smoothing=0.0,
                      device="cpu", seed=0)
    res = fit(cfg, data=data)
    assert res.summary["accuracy"] >= 0.97


@pytest.mark.slow
def test_resnet18_stage_trains_through_fit_one_cycle(mnist):
    """The reproduce stage end to end on a slice of the 3s and 7s (the full stage takes over a minute here)."""
    from digitlab.chapter.reproduce import EXTRA_STAGES
    from digitlab.chapter.stages import ChapterData
    from digitlab.data.mnist import Split, as_xy

    full = ChapterData.load()
    tr = Split(full.train.images[:1024], full.train.labels[:1024])
    va = Split(full.valid.images[:512], full.valid.labels[:512])
    small = ChapterData(tr, va, *as_xy(tr, 3), *as_xy(va, 3))
    res = EXTRA_STAGES["resnet18"](small, seed=0)
    assert res.book == 0.9971 and res.epochs == 1 and len(res.history) == 1
    assert res.accuracy >= 0.9 and res.seconds > 0
