"""Claim checked: `precision = "auto"` picks the faster of bf16 and fp32 on the CPU it runs on.

One training step (forward, loss, backward, SGD update) of the default recipe's fastcnn at batch 256 and of the
chapter's ResNet-18 at batch 64, in fp32 and under bf16 autocast, timed alternately in one process after a
warm-up (medians of `--repeats` rounds of `--steps` steps). `--as-avx2` also runs the same measurement in a child
process told `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`, which makes PyTorch and oneDNN dispatch exactly as on
an AVX2-only CPU (no AVX-512, no bf16 units): the class the policy must not send to bf16.

    python -m benchmarks.precision [--as-avx2] [--repeats 5] [--steps 10]

Record: results/precision-<capability>.json (one per machine class measured).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks.common import write_record
from digitlab.hardware import Precision, describe_machine, machine_class
from digitlab.models.registry import build_model
from digitlab.train.optim import SGD

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
CASES = {"fastcnn, batch 256": ("fastcnn", 256, 10), "resnet18_fastai, batch 64": ("resnet18_fastai", 64, 2)}


def step_seconds(model_name: str, bs: int, n_classes: int, precision: str, steps: int, repeats: int) -> list[float]:
    """Seconds per training step, one figure per round."""
    torch.manual_seed(0)
    model = build_model(model_name, n_classes).to(memory_format=torch.channels_last)
    opt = SGD(model.parameters(), 0.01, mom=0.9)
    x, y = torch.rand(bs, 1, 28, 28), torch.randint(0, n_classes, (bs,))
    prec = Precision(precision, "measured")

    def step():
        with prec.autocast("cpu"):
            out = model(x)
        F.cross_entropy(out.float(), y).backward()
        opt.step()
        opt.zero_grad()

    for _ in range(3):
        step()  # warm-up: oneDNN builds its kernels for these shapes
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rounds.append((time.perf_counter() - start) / steps)
    return rounds


def measure(steps: int, repeats: int) -> dict:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    out = {}
    for case, (name, bs, n_classes) in CASES.items():
        times = {"fp32": [], "bf16": []}
        for _ in range(repeats):  # alternated, so both precisions see the same machine noise
            for prec in times:
                times[prec] += step_seconds(name, bs, n_classes, prec, steps, 1)
        med = {p: statistics.median(t) for p, t in times.items()}
        out[case] = {"fp32_ms": med["fp32"] * 1e3, "bf16_ms": med["bf16"] * 1e3,
                     "bf16_over_fp32": med["bf16"] / med["fp32"], "faster": min(med, key=med.get),
                     "rounds_ms": {p: [round(t * 1e3, 2) for t in ts] for p, ts in times.items()}}
    facts = describe_machine("cpu")
    return {"machine": facts, "machine_class": machine_class(facts), "auto_picks": facts["precision"],
            "auto_is_faster_on_every_case": all(c["faster"] == facts["precision"] for c in out.values()),
            "cases": out}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--as-avx2", action="store_true", help="also measure as an AVX2-only CPU (a child process)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    res = measure(args.steps, args.repeats)
    if args.child:
        print(json.dumps(res))
        return
    results = [res]
    if args.as_avx2:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.precision", "--child", "--steps", str(args.steps),
                               "--repeats", str(args.repeats)], env={**os.environ, **AVX2_ENV},
                              capture_output=True, text=True, check=True)
        child = json.loads(proc.stdout.splitlines()[-1])
        child["dispatch_forced"] = AVX2_ENV
        results.append(child)
    for r in results:
        cap = r["machine"]["cpu_capability"].lower()
        print(f"{r['machine_class']} ({r['machine']['cpu_model']}): auto -> {r['auto_picks']}")
        for case, c in r["cases"].items():
            print(f"  {case}: fp32 {c['fp32_ms']:.1f} ms, bf16 {c['bf16_ms']:.1f} ms per step "
                  f"(bf16/fp32 {c['bf16_over_fp32']:.2f}x)")
        write_record(f"precision-{cap}", {"claim": "auto picks the faster precision on this CPU",
                                          "steps": args.steps, "repeats": args.repeats, **r})


if __name__ == "__main__":
    main()
