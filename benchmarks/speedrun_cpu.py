"""Claim checked: `digitlab speedrun --target T --device cpu` reaches T on every seed, and how fast, per machine class.

Runs the speedrun in a fresh `digitlab speedrun ... --json` process, as a user does (its clock starts after an
untimed one-epoch warm-up run, in which oneDNN builds its kernels); `--as-avx2` tells PyTorch and oneDNN to dispatch
as on an AVX2-only CPU (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2), where `auto` trains in fp32 and the
speedrun takes its fp32 recipe. Bar (issue 25, AVX2): 99.0% within 45 s, every seed.

    python -m benchmarks.speedrun_cpu [--target 0.99] [--seeds 3] [--as-avx2]

Record: results/speedrun-cpu-<target>[-avx2].json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from digitlab.hardware import machine_class

from .common import write_record
from .precision import AVX2_ENV

DIGITLAB = str(Path(sys.executable).with_name("digitlab"))
BAR_S = {0.99: 45.0}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--as-avx2", action="store_true")
    args = ap.parse_args(argv)
    env = {**os.environ, **(AVX2_ENV if args.as_avx2 else {})}
    cmd = [DIGITLAB, "speedrun", "--target", str(args.target), "--device", "cpu", "--seeds", str(args.seeds), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode not in (0, 1):  # 1: some seed missed the target, still a result
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    res = json.loads(proc.stdout)
    facts = json.loads(subprocess.run([DIGITLAB, "info", "--json"], capture_output=True, text=True, env=env,
                                      check=True).stdout)
    bar = BAR_S.get(args.target)
    slowest = max(r["seconds"] for r in res["runs"])
    record = {**res, "command": " ".join(cmd[1:]), "machine_class": machine_class(facts), "machine": facts,
              "dispatch_forced": AVX2_ENV if args.as_avx2 else None, "slowest_seconds": slowest,
              "bar_seconds": bar, "bar_met": bool(res["all_reached"] and bar is not None and slowest <= bar)}
    for r in res["runs"]:
        print(f"seed {r['seed']}: {r['accuracy']:.4f} in {r['seconds']:.1f} s")
    print(f"{record['machine_class']}: every seed reached {args.target}: {res['all_reached']}; slowest {slowest:.1f} s"
          + (f" (bar {bar:.0f} s: {'met' if record['bar_met'] else 'NOT met'})" if bar else ""))
    print(write_record(f"speedrun-cpu-{args.target}{'-avx2' if args.as_avx2 else ''}", record))


if __name__ == "__main__":
    main()
