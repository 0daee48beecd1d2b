"""Every named training recipe, as data: a one-line summary and the TrainConfig fields that differ from its
defaults. This is the one table. recipes.py runs them by name (`digitlab recipe NAME`) and builds ensembles of
them; a known data set names its default recipe here (data/catalogue.py), which TrainConfig.resolve applies under
plain `digitlab train`; `speedrun-*` are `digitlab speedrun`'s, one per target and kind of device. What each
measured, on which hardware, is in docs/recipes.md and benchmarks/results/. Plain data, so every layer may read it.
"""

from __future__ import annotations

SPEEDRUN = {"engine": "fast", "valid_size": 0}

RECIPES: dict[str, tuple[str, dict]] = {
    # MNIST: the fast engine's 20 epochs with test-time shifts (valid 99.65% on a GPU, the best of six that fit 2
    # CPU cores' 5 minutes: benchmarks/results/gpu-validation-nvidia-h200.json, confirmed on 2 CPU cores by
    # benchmarks/default_recipe.py)
    "default-mnist": ("MNIST's default (plain `digitlab train`): fastcnn, 20 epochs on the fast engine, one-cycle "
                      "SGD (Nesterov) lr 0.2, bs 256, wd 5e-4, label smoothing 0.1, augmentation, test-time shifts",
                      dict(engine="fast", epochs=20, tta=True)),
    # On a CPU without bf16 units a step takes 1.8x as long in fp32 (results/precision-*.json): 12 epochs, not 20,
    # fit the same 5 minutes there (results/default-recipe-mnist-avx2.json; the GPU sweep's neighbours: 10 epochs,
    # valid 99.53%, 15 epochs, valid 99.62%)
    "default-mnist-fp32-cpu": ("MNIST's default where the CPU trains in fp32 (no bf16 units): the same, 12 epochs",
                               dict(engine="fast", epochs=12, tta=True)),
    # Fashion-MNIST: clothes keep their class mirrored and are photographed upright: left-right flips (also among
    # the test-time views), milder shifts, rotations and zoom; 30 epochs (valid 93.75% on a GPU, the best of ten:
    # results/gpu-validation-*fashion*.json)
    "default-fashion-mnist": ("Fashion-MNIST's default: fastcnn, 30 epochs on the fast engine, mirror images in "
                              "training and at test time, milder augmentation",
                              dict(engine="fast", epochs=30, aug_flip=True, aug_shift=1.0, aug_degrees=5.0,
                                   aug_scale=0.05, tta=True)),
    "best": ("fastcnn_deep (two convs per size, 1.15M parameters), 30 epochs on the fast engine (bf16, CUDA graph "
             "and torch.compile on a GPU): a GPU recipe, hours on 2 CPU cores",
             dict(model="fastcnn_deep", epochs=30, compile=True, engine="fast", valid_size=0)),
    "best-m5": ("An et al. 2020's M5 (`convnet5x5`: five unpadded 5x5 convs, no pooling), 60 epochs on the fast "
                "engine with stronger augmentation (3 pixels, 15 degrees); a member of best-ensemble",
                dict(model="convnet5x5", epochs=60, aug_shift=3.0, aug_degrees=15.0, compile=True, engine="fast",
                     valid_size=0)),
    "best-strong": ("fastcnn_deep, 40 epochs on the fast engine with stronger augmentation (3 pixels, 15 degrees, "
                    "zoom +-15%); a member of best-ensemble",
                    dict(model="fastcnn_deep", epochs=40, aug_shift=3.0, aug_degrees=15.0, aug_scale=0.15,
                         compile=True, engine="fast", valid_size=0)),
    "best-3v7": ("the book's 3s and 7s: fastcnn, 40 epochs on the fast engine (one-cycle SGD lr 0.2, bs 256, label "
                 "smoothing 0.1, augmentation, bf16)", dict(task="3v7", epochs=40, engine="fast")),
    # `digitlab speedrun --target T`: speedrun-T-<kind of device> (speedrun.py picks one); all 60000 training
    # images, no validation split: the speedrun recipes were fixed beforehand and are races on the test set
    "speedrun-0.99-cpu": ("to 99.0% on a CPU with bf16 units: fastcnn, 2 epochs, bs 128, lr 0.1, no augmentation",
                          dict(SPEEDRUN, epochs=2, augment=False, bs=128, lr=0.1)),
    # a CPU that trains in fp32 (no bf16 units, digitlab.hardware): fastcnn's step there is 2x a bf16 CPU's
    # (results/precision-avx2.json), too slow for 2 epochs in 45 s. A narrower fastcnn for 2 epochs, its lr chosen
    # on a 10000-image validation split (0.1 / 0.15 / 0.2: mean 98.66 / 98.79 / 98.89% there, 3 seeds, AVX2
    # dispatch), then scored once on test: results/speedrun-cpu-0.99-avx2.json. Other targets keep the bf16 recipes.
    "speedrun-0.99-cpu-fp32": ("to 99.0% on a CPU that trains in fp32: fastcnn_small (width 24), 2 epochs, bs 128, "
                               "lr 0.2, no augmentation",
                               dict(SPEEDRUN, model="fastcnn_small", epochs=2, augment=False, bs=128, lr=0.2)),
    "speedrun-0.995-cpu": ("to 99.5% on a CPU: fastcnn, 10 epochs, test-time shifts", dict(SPEEDRUN, epochs=10, tta=True)),
    "speedrun-0.997-cpu": ("to 99.7% on a CPU: fastcnn_deep, 15 epochs", dict(SPEEDRUN, model="fastcnn_deep", epochs=15)),
    "speedrun-0.99-cuda": ("to 99.0% on a GPU: fastcnn, 3 epochs, no augmentation, compiled",
                           dict(SPEEDRUN, epochs=3, augment=False, compile=True)),
    "speedrun-0.995-cuda": ("to 99.5% on a GPU: fastcnn, 8 epochs, test-time shifts, compiled",
                            dict(SPEEDRUN, epochs=8, compile=True, tta=True)),
    "speedrun-0.997-cuda": ("to 99.7% on a GPU: fastcnn_deep, 17 epochs, compiled",
                            dict(SPEEDRUN, model="fastcnn_deep", epochs=17, compile=True)),
}


def fields_of(name: str) -> dict:
    """A recipe's TrainConfig fields (a copy)."""
    return dict(RECIPES[name][1])
