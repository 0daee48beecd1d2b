"""The chapter's last stage (resnet18, fit_one_cycle(1, 0.1) on 3 vs 7): ours against fastai and plain PyTorch.

Ours: digitlab.chapter.resnet_stage.stage_resnet18, one run per seed after one warm-up run: each seed's
accuracy, and the median epoch time (training + validation, the Learner's own clock) and stage time (with model
building).
fastai, measured: fastai 2.8.12's own code for the stage (vision_learner(dls, resnet18, pretrained=False) +
fit_one_cycle(1, 0.1)) in its own environment (benchmarks/peers), per seed, on the same machine and threads; its
record is results/fastai-resnet18.json (`python -m benchmarks.peers`), or, with --with-fastai, it is measured in
this run first. The seeds default to the record's, so both sides have the same number of runs. The bars:
accuracy at parity with fastai's distribution (our mean at least fastai's mean less one standard deviation over
the same number of seeds: the book's 0.9971 is one draw from it), and speed as fastai's median epoch over ours.
Plain PyTorch, in this process: the same model, the same precision (`auto`: digitlab.hardware) and channels-last memory, with TensorDataset +
torch.utils.data.DataLoader (bs 64, shuffled, drop_last) + torch.optim.AdamW (fastai's Adam: decoupled weight
decay; torch.optim.Adam's weight_decay is L2) + torch.optim.lr_scheduler.OneCycleLR (fastai's defaults).
Run: python -m benchmarks.resnet [--seeds 42 1 2] [--with-fastai] [--plain-seeds 1] [--no-plain] [--variant ...]
An AVX2-only CPU's figures, on any x86 CPU (PyTorch and oneDNN dispatch as there; fastai's process too):
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python -m benchmarks.resnet --with-fastai --seeds 3 4 5 6 7 --tag avx2
writes results/resnet-avx2.json and results/fastai-resnet18-avx2.json. Each record names its machine class.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import TensorDataset

from digitlab.chapter import resnet_stage
from digitlab.chapter.resnet_stage import stage_resnet18
from digitlab.chapter.stages import ChapterData
from digitlab.data.tasks import to_classes, to_input
from digitlab.hardware import auto_precision, describe_machine, machine_class
from digitlab.models.resnet import resnet18, resnet18_fastai, zero_last_bn

from .common import RESULTS, median, write_record
from .peers import run_fastai

# accuracy experiments on the stage (benchmarks/NOTES.md, "Fourth session"): fastai_learner's variants
VARIANTS = {
    "fastai": {},
    "no-stem-pool": {"stem_pool": False},       # the first stage at 14x14 pixels, about 3.5x the arithmetic
    "label-smoothing": {"label_smoothing": 0.1},
    "digit-resnet18": {"build": lambda: resnet18(2)},  # our 28x28 ResNet-18: 3x3 stem, stages at 14-2 pixels
    "no-head-dropout": {"ps": 0.0},             # cnn_learner(..., ps=0)
    "wd-0.1": {"wd": 0.1},
    # each residual branch's last BatchNorm starts at zero (Goyal et al. 2017; torchvision's zero_init_residual):
    # the untrained net is a shallow one, which should matter most when training is a single epoch
    "zero-init-residual": {"build": lambda: zero_init_residuals(resnet18_fastai(2))},
}


def zero_init_residuals(model):
    for block in model.blocks:
        zero_last_bn(block)
    return model


BOOK_ACC = 0.9971
FASTAI_RECORD = RESULTS / "fastai-resnet18.json"  # written by python -m benchmarks.peers


def fastai_record(path=FASTAI_RECORD) -> dict:
    """fastai's measured runs of the stage; a clear error when they have not been measured on this machine."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path}: no fastai record; measure it with `python -m benchmarks.peers` or pass "
                         f"--with-fastai") from None


def versus_fastai(ours: list[dict], fastai: dict) -> dict:
    """The two bars against fastai's distribution: accuracy parity, and speed as a ratio of median epochs."""
    accs = [r["accuracy"] for r in fastai["runs"]]
    mean, sd = statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
    ours_mean = statistics.mean(r["accuracy"] for r in ours)
    epoch = median([r["epoch_s"] for r in ours])
    fastai_epoch = median([r["epoch_s"] for r in fastai["runs"]])
    return {"fastai_seeds": [r["seed"] for r in fastai["runs"]], "fastai_accuracies": accs,
            "fastai_mean_accuracy": mean, "fastai_sd_accuracy": sd, "fastai_epoch_s": fastai_epoch,
            "fastai_environment": fastai.get("environment", {}),
            "accuracy_bar": f"mean over {len(ours)} seeds >= fastai's mean - 1 sd over {len(accs)} seeds "
                            f"({mean - sd:.4f})",
            "accuracy_parity": ours_mean >= mean - sd and len(ours) == len(accs),
            "vs_fastai": fastai_epoch / epoch}


def plain_torch(data: ChapterData, seed: int, bs: int = resnet_stage.BS, lr: float = 0.1) -> tuple[float, float]:
    """(epoch seconds, accuracy) of the idiomatic PyTorch loop over the same model and schedule."""
    torch.manual_seed(seed)
    train, valid = to_classes(data.train, (3, 7)), to_classes(data.valid, (3, 7))
    model = resnet18_fastai(2).to(memory_format=torch.channels_last)
    dl = TorchDataLoader(TensorDataset(train.images, train.labels), batch_size=bs, shuffle=True, drop_last=True)
    valid_dl = TorchDataLoader(TensorDataset(valid.images, valid.labels), batch_size=resnet_stage.VALID_BS)
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim > 1]},
                             {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=len(dl), pct_start=0.25, div_factor=25.0,
                                                final_div_factor=1e5 / 25.0, base_momentum=0.85, max_momentum=0.95)
    precision = auto_precision("cpu")
    start = time.perf_counter()
    model.train()
    for xb, yb in dl:
        with precision.autocast("cpu"):
            out = model(to_input(xb))
        loss = F.cross_entropy(out.float(), yb)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    model.eval()
    correct = 0
    with torch.no_grad():
        for xb, yb in valid_dl:
            with precision.autocast("cpu"):
                out = model(to_input(xb)).float()
            F.cross_entropy(out, yb)  # the Learner reports the validation loss too
            correct += (out.argmax(1) == yb).sum().item()
    return time.perf_counter() - start, correct / len(valid.labels)


def warm_up(data: ChapterData) -> None:
    """A few training steps and a validation pass, not counted: oneDNN builds its kernels for each shape once
    (the training batch, the full and the last validation batch); a whole epoch is not needed for that."""
    learn = resnet_stage.fastai_learner(data, seed=0)
    learn.model.train()
    for i, (xb, yb) in enumerate(learn.dls.train):
        with learn.precision.autocast("cpu"):
            out = learn.model(xb)
        F.cross_entropy(out.float(), yb).backward()
        if i == 2:
            break
    learn.model.eval()
    with torch.no_grad(), learn.precision.autocast("cpu"):
        for xb, _ in learn.dls.valid:
            learn.model(xb)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the fastai record's seeds")
    ap.add_argument("--with-fastai", action="store_true", help="measure fastai (benchmarks/peers) in this run, "
                    "on the same seeds (default 42 1 2), before ours")
    ap.add_argument("--plain-seeds", type=int, default=1, help="run the plain-PyTorch baseline for this many of "
                    "the seeds (its epoch time is the comparison; one is enough for that)")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain-PyTorch baseline")
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="fastai", help="the stage as fastai builds it, "
                    "or one of the accuracy experiments of benchmarks/NOTES.md (their records are written to "
                    "results/resnet-VARIANT.json)")
    ap.add_argument("--tag", default="", help="a machine class to name the records by (e.g. avx2: "
                    "results/resnet-avx2.json, results/fastai-resnet18-avx2.json)")
    args = ap.parse_args(argv)
    variant = VARIANTS[args.variant]
    fastai_path = RESULTS / f"fastai-resnet18{'-' + args.tag if args.tag else ''}.json"
    if args.with_fastai:
        run_fastai(args.seeds or [42, 1, 2], out=fastai_path)
    fastai = fastai_record(fastai_path)
    args.seeds = args.seeds or [r["seed"] for r in fastai["runs"]]
    data = ChapterData.load()
    warm_up(data)
    ours, plain = [], []
    print(f"{'seed':>5s} {'ours acc':>9s} {'epoch s':>8s} {'stage s':>8s} {'plain acc':>10s} {'plain s':>8s}")
    for i, seed in enumerate(args.seeds):  # interleaved, so both see the same machine noise
        res = stage_resnet18(data, seed=seed, **variant)
        ours.append({"seed": seed, "accuracy": res.accuracy, "epoch_s": res.extras["ce_recorder"].logs[-1]["time"],
                     "stage_s": res.seconds})
        if not args.no_plain and not variant and i < args.plain_seeds:
            t, acc = plain_torch(data, seed)
            plain.append({"seed": seed, "accuracy": acc, "epoch_s": t})
        p = f"{plain[-1]['accuracy']:10.4f} {plain[-1]['epoch_s']:8.2f}" if len(plain) > i else ""
        print(f"{seed:5d} {res.accuracy:9.4f} {ours[-1]['epoch_s']:8.2f} {res.seconds:8.2f} {p}", flush=True)
    epoch, stage = median([r["epoch_s"] for r in ours]), median([r["stage_s"] for r in ours])
    mean_acc = sum(r["accuracy"] for r in ours) / len(ours)
    versus = versus_fastai(ours, fastai)
    facts = describe_machine("cpu")
    record = {"claim": "resnet18 fit_one_cycle(1, 0.1) on 3 vs 7: ours vs fastai (measured) and plain PyTorch",
              "machine_class": machine_class(facts), "precision": facts["precision"], "batch_size": resnet_stage.BS, "ours": ours, "ours_epoch_s": epoch, "ours_stage_s": stage,
              "ours_mean_accuracy": mean_acc, "book_accuracy": BOOK_ACC, **versus, "plain": plain}
    print(f"ours: mean accuracy {mean_acc:.4f} (book {BOOK_ACC}), median epoch {epoch:.2f} s, stage {stage:.2f} s")
    print(f"fastai over {len(versus['fastai_accuracies'])} seeds: mean accuracy {versus['fastai_mean_accuracy']:.4f} "
          f"(sd {versus['fastai_sd_accuracy']:.4f}), median epoch {versus['fastai_epoch_s']:.1f} s")
    print(f"accuracy parity ({versus['accuracy_bar']}): {'met' if versus['accuracy_parity'] else 'NOT met'}; "
          f"speed: {versus['vs_fastai']:.2f}x fastai")
    if plain:
        plain_s = median([r["epoch_s"] for r in plain])
        record.update(plain_epoch_s=plain_s, vs_plain=plain_s / epoch,
                      plain_mean_accuracy=sum(r["accuracy"] for r in plain) / len(plain))
        print(f"vs plain PyTorch's {plain_s:.2f} s: {plain_s / epoch:.2f}x")
    record["variant"] = args.variant
    name = ("resnet" if args.variant == "fastai" else f"resnet-{args.variant}") + (f"-{args.tag}" if args.tag else "")
    print(f"wrote {write_record(name, record)}")


if __name__ == "__main__":
    main()
