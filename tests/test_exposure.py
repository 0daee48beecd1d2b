"""Learning what is not a digit (issue 27): the outlier-exposure loss, the 8x8 scans of MNIST digits, the
non-digit sets a model is shown and chosen on, and the fast engine training with them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from digitlab import ood
from digitlab.config import TrainConfig
from digitlab.data import outliers
from digitlab.data.lowres import INK_LEVELS, low_resolution, scan_8x8
from digitlab.data.mnist import Split
from digitlab.data.tasks import TaskData, load_task, load_task_for
from digitlab.data.uci import uci_digits
from digitlab.errors import ConfigError
from digitlab.ood.exposure import head_input, head_score, train_head
from digitlab.train.fast import FastTrainer
from digitlab.train.losses import uniform_cross_entropy

from ci_mode import missing


@pytest.fixture(scope="module")
def digits():
    return load_task("digits")


def test_the_exposure_loss_is_cross_entropy_against_equal_probabilities():
    logits = torch.randn(7, 10, generator=torch.Generator().manual_seed(0)) * 3
    uniform = torch.full((7, 10), 0.1)
    assert torch.allclose(uniform_cross_entropy(logits), F.cross_entropy(logits, uniform), atol=1e-6)
    assert uniform_cross_entropy(torch.zeros(3, 10)).item() == pytest.approx(np.log(10))  # its minimum


def test_an_8x8_scan_counts_ink_per_block_as_the_uci_digits_do(digits):
    full = np.full((28, 28), 255, np.uint8)  # all ink: every block full
    assert np.array_equal(scan_8x8(full), np.ones((8, 8)))
    images = digits.train.images[:500].numpy()
    thick, thin = (np.stack([scan_8x8(x, level) for x in images]) for level in INK_LEVELS)
    assert np.allclose(thick * 16, (thick * 16).round())  # levels 0..16, as the UCI files hold
    uci, _ = uci_digits()
    # the kind of picture the UCI scans are: their mean ink (0.305) lies within the range the scans are made in
    # (0.35 with the thickest strokes, 0.21 with the thinnest)
    assert thin.mean() < uci.mean() < thick.mean(), (thin.mean(), uci.mean(), thick.mean())


def test_low_resolution_digits_keep_their_labels_and_come_out_prepared(digits):
    x, y = low_resolution(digits.train.images[:64], digits.train.labels[:64])
    assert x.dtype == torch.uint8 and x.shape[1:] == (28, 28) and len(x) == len(y) >= 60
    assert set(y.tolist()) <= set(digits.train.labels[:64].tolist())
    assert x.float().amax((1, 2)).min() > 200  # ink, prepared as predict prepares a picture


def test_the_three_parts_share_no_picture_and_come_out_prepared():
    small = {"closed": 14, "open": 14, "scribble": 10, "letters": 10}
    train, held = outliers.exposure_set(small, root=outliers.FASHION / "absent")
    assert held == {k: v for k, v in held.items() if k in small} and sum(held.values()) == len(train) >= 40
    assert train.dtype == torch.uint8 and train.shape[1:] == (28, 28)
    valid = outliers.choice_sets(10, root=outliers.FASHION / "absent")
    assert set(valid) == set(outliers.KINDS)
    for kind in outliers.KINDS:  # pictures of the valid part are none of the train part's
        a = {bytes(np.asarray(p)) for p in outliers.drawn(kind, 10, "train")}
        b = {bytes(np.asarray(p)) for p in outliers.drawn(kind, 10, "valid")}
        assert not a & b, kind


def test_fashion_mnist_training_images_join_the_train_part_and_a_held_out_slice_the_valid_part():
    if outliers.fashion_images("valid") is None:
        missing(f"Fashion-MNIST is not installed in {outliers.FASHION} (apt-get install dataset-fashion-mnist)")
    assert outliers.FASHION_PARTS["train"].stop <= outliers.FASHION_PARTS["valid"].start  # disjoint slices
    assert len(outliers.fashion_images("valid")) == 2000
    sets = outliers.choice_sets(30)
    assert len(sets["fashion"]) == 30
    assert torch.equal(sets["fashion_as_is"], torch.from_numpy(outliers.fashion_images("valid")[:30]))  # unprepared


def test_config_refuses_what_outlier_exposure_cannot_do():
    with pytest.raises(ConfigError, match="fast engine"):
        TrainConfig(outlier_exposure=0.5, engine="learner")
    with pytest.raises(ConfigError, match="loss weight"):
        TrainConfig(outlier_exposure=-1, engine="fast")
    with pytest.raises(ConfigError, match="share of the training digits"):
        TrainConfig(lowres=1.5)


def test_non_digits_are_refused_for_a_model_of_clothes():
    if outliers.fashion_images("valid") is None:
        missing(f"Fashion-MNIST is not installed in {outliers.FASHION} (apt-get install dataset-fashion-mnist)")
    for field in ("outlier_exposure", "lowres"):
        with pytest.raises(ConfigError, match="made for models of digits"):
            load_task_for(TrainConfig(engine="fast", data=str(outliers.FASHION), **{field: 0.5}))


def test_the_fast_engine_adds_the_weighted_exposure_loss_of_the_non_digits(digits):
    small = TaskData(Split(digits.train.images[:512], digits.train.labels[:512]),
                     Split(digits.valid.images[:256], digits.valid.labels[:256]), digits.classes,
                     outliers=digits.test.images[:300])  # any pictures will do for the arithmetic
    trainer = FastTrainer(TrainConfig(engine="fast", bs=64, precision="fp32", outlier_exposure=0.7), small)
    trainer.prepare(0, 1)
    x, y = trainer.epoch_data(0, 0)
    o = trainer.epoch_outliers(0, 0)
    assert o.shape == (trainer.steps_per_epoch * 32, 1, 28, 28)
    assert torch.equal(o, trainer.epoch_outliers(0, 0))  # the same draw every time: a resumed run sees it again
    xb, yb, ob = x[:64], y[:64], o[:32]
    trainer.model.train()
    got = trainer.plain_forward_loss(xb, yb, ob)
    out = trainer.model(torch.cat([xb, ob]))
    want = F.cross_entropy(out[:64], yb, label_smoothing=0.1) + 0.7 * uniform_cross_entropy(out[64:])
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(ConfigError, match="non-digit pictures"):
        FastTrainer(TrainConfig(engine="fast", bs=64, outlier_exposure=0.5), TaskData(small.train, small.valid,
                                                                                      small.classes))


def test_the_reject_head_learns_what_it_is_shown_the_same_way_every_time():
    """Two clusters of head inputs (digits near 0, non-digits near 2 in 12 dimensions): the trained head's scores
    separate them, are larger for the non-digits, and the same inputs give the same statistics."""
    g = torch.Generator().manual_seed(0)
    digits, others = torch.randn(600, 12, generator=g), torch.randn(300, 12, generator=g) + 2
    stats = train_head(digits, others)
    assert all(torch.equal(stats[k], v) for k, v in train_head(digits, others).items())
    logits, features = digits[:, :2], digits[:, 2:]  # head_input puts features first, then logits
    inside = head_score(stats, logits, features)
    outside = head_score(stats, others[:, :2], others[:, 2:])
    assert torch.equal(head_input(logits, features), torch.cat([features, logits], 1))
    assert ood.auroc(inside, outside) > 0.99


def test_the_reject_head_is_for_models_of_digits(tmp_path):
    """A model of clothes has no use for a head that learns letters and shapes: refused before any work."""
    from digitlab.ood.fitting import exposure_stats

    with pytest.raises(ood.OodError, match="models of\\s+digits"):
        exposure_stats(None, None, ("Bag", "Sneaker"), None, None)


def test_the_inner_map_split_keeps_the_models_scores_and_puts_the_pooled_map_beside_its_features():
    """exposure_map's features: the penultimate ones, then fastcnn's 64 x 7 x 7 map (its second block) pooled to
    3x3, place by place; the head still gives the model's own scores."""
    from digitlab.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("fastcnn", 10).eval()
    body, head = ood.split_head(model, inner=True)
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        f = body(x)
        inner = F.adaptive_avg_pool2d(model[3](model[2](model[1](model[0](x)))), 3).permute(0, 2, 3, 1).flatten(1)
        assert f.shape == (5, 128 + 64 * 9) and torch.allclose(head(f), model(x), atol=1e-5)
        assert torch.allclose(f[:, 128:], inner, atol=1e-6)
        assert torch.equal(f[:, :128], ood.split_head(model)[0](x).flatten(1))  # the plain split's features first
    with pytest.raises(ood.OodError, match="no inner map .* use exposure"):
        ood.split_head(build_model("mlp", 10), inner=True)


@pytest.mark.parametrize("size,side,plain", [((7, 7), 3, True), ((7, 7), 2, True), ((14, 14), 3, False),
                                             ((5, 5), 3, False), ((8, 6), 3, False), ((6, 9), 3, True)])
def test_the_inner_maps_pooling_is_adaptive_average_pooling_and_plain_where_onnx_needs_it(size, side, plain):
    """The page's runtime (ONNX) has no adaptive pooling of 7 to 3; where the windows are all alike the pooling
    is a plain average pooling, with the same numbers; where they are not, the adaptive one."""
    from digitlab.ood.features import pooling

    x = torch.rand(2, 5, *size, generator=torch.Generator().manual_seed(0))
    pool = pooling(size, side)
    assert torch.allclose(pool(x), F.adaptive_avg_pool2d(x, side), atol=1e-6)
    traced = torch.jit.trace(lambda t: pool(t), x)  # which operator it runs: what the ONNX export sees
    assert ("avg_pool2d" in str(traced.graph) and "adaptive" not in str(traced.graph)) == plain


def test_heads_side_by_side_learn_apart_and_one_head_is_the_plain_head():
    """Four heads trained side by side each on its own order of the data end up different, and their average is
    one layer four times as wide; one head is the plain one-hidden-layer network (same numbers as nn.Linear)."""
    from digitlab.ood.exposure import Heads, mlp_score

    g = torch.Generator().manual_seed(0)
    digits, others = torch.randn(600, 12, generator=g), torch.randn(300, 12, generator=g) + 2
    stats = train_head(digits, others, hidden=8, heads=4)
    assert stats["w1"].shape == (12, 32) and stats["b1"].shape == (32,) and stats["w2"].shape == (32,)
    blocks = stats["w1"].split(8, 1)
    assert not any(torch.allclose(blocks[0], b, atol=1e-3) for b in blocks[1:])
    assert ood.auroc(mlp_score(stats, digits), mlp_score(stats, others)) > 0.99
    torch.manual_seed(0)
    one = Heads(12, 8, 1)
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    x = torch.randn(1, 5, 12, generator=g)
    assert torch.allclose(one(x)[0], plain(x[0])[:, 0], atol=1e-6)


@pytest.mark.slow
def test_a_model_with_the_exposure_map_detector_exports_to_onnx_with_its_score(tmp_path):
    """The exported ONNX file computes exposure_map's score as PyTorch does (what the exported web page runs)."""
    from digitlab.export import export_onnx, onnx_outputs
    from digitlab.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("fastcnn", 10).eval()
    d = 128 + 64 * 9   # the features alone: the logits are a linear function of them
    g = torch.Generator().manual_seed(1)
    stats = {"w1": torch.randn(d, 64, generator=g) / 30, "b1": torch.randn(64, generator=g),
             "w2": torch.randn(64, generator=g), "b2": torch.tensor(0.5)}
    scored = ood.ScoredModel(model, ood.Detector("exposure_map", stats, threshold=0.0))
    x = torch.rand(7, 1, 28, 28, generator=g)
    path = export_onnx(scored, tmp_path / "m.onnx", {"classes": list(range(10))})
    logits, scores = onnx_outputs(path, x)
    with torch.no_grad():
        want_logits, want_scores = scored(x)
    assert torch.allclose(logits, want_logits, atol=1e-4) and torch.allclose(scores, want_scores, rtol=1e-4, atol=1e-3)
    assert torch.allclose(want_scores, ood.Detector("exposure_map", stats).score(
        *ood.logits_and_features(model, x[:, 0], ood.detector_parts(model, "exposure_map"))), atol=1e-4)
