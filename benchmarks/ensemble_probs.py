"""python -m benchmarks.ensemble_probs FILE: rescore the ensembles of a `benchmarks.gpu --probs` record on the CPU.

The record holds every member's test probabilities (float16), named "<recipe> seed<N>" (and "... tta"). This
prints each recipe's models alone and together, the mixed ensemble of all of them (each model one equal vote, as
`digitlab recipe best-ensemble` scores it), and the mixed ensembles that leave one seed out, to show how much the
figure depends on any one seed.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from digitlab.data.tasks import load_task
from digitlab.train.metrics import exact_accuracy


def families(record: dict[str, torch.Tensor], tta: bool = False) -> dict[str, dict[int, torch.Tensor]]:
    """{recipe label: {seed: probabilities}} for the plain (or TTA) members."""
    out: dict[str, dict[int, torch.Tensor]] = {}
    for name, probs in record.items():
        if name.endswith(" tta") != tta:
            continue
        recipe, seed = name.removesuffix(" tta").rsplit(" seed", 1)
        out.setdefault(recipe, {})[int(seed)] = probs.float()
    return out


def rescore(record: dict[str, torch.Tensor], labels: torch.Tensor, tta: bool = False) -> dict:
    fams = families(record, tta)

    def acc(members) -> float:
        return exact_accuracy(sum(members).argmax(1), labels)

    seeds = sorted(set.intersection(*(set(f) for f in fams.values())))
    return {
        "recipes": {r: {"singles": {s: acc([p]) for s, p in f.items()}, "ensemble": acc(f.values())}
                    for r, f in fams.items()},
        "mixed": acc([p for f in fams.values() for p in f.values()]),
        "n_models": sum(len(f) for f in fams.values()),
        "leave_one_seed_out": {s: acc([p for f in fams.values() for k, p in f.items() if k != s]) for s in seeds},
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path, help="a --probs record, e.g. results/gpu-runs/h200-run4-members.pt")
    ap.add_argument("--tta", action="store_true", help="score the members' test-time-shift probabilities")
    args = ap.parse_args(argv)
    res = rescore(torch.load(args.file), load_task("digits").valid.labels, args.tta)
    for recipe, r in res["recipes"].items():
        singles = list(r["singles"].values())
        print(f"{recipe}: alone {min(singles):.4f}-{max(singles):.4f} (mean {statistics.mean(singles):.5f}), "
              f"ensemble of {len(singles)} {r['ensemble']:.4f}")
    loo = res["leave_one_seed_out"]
    print(f"mixed ensemble of {res['n_models']}: {res['mixed']:.4f}; leaving one seed out: "
          + ", ".join(f"{v:.4f}" for v in loo.values()) + f" (mean {statistics.mean(loo.values()):.5f})")


if __name__ == "__main__":
    main()
