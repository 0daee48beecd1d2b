"""python -m benchmarks.reproduce_time: wall-clock time and peak resident memory of `digitlab reproduce`, as a user
runs it (a fresh process each time, Python start included), median of --repeats runs. Bars: < 4 s, < 1.5 GB.
Writes results/reproduce_time.json."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import write_record


def one_run(out: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one `digitlab reproduce`, the child's own rusage (not the children's max)."""
    cmd = [str(Path(sys.executable).with_name("digitlab")), "reproduce", "--out", str(out), "--quiet"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"digitlab reproduce failed with exit code {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KB


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(Path(tmp) / f"r{i}") for i in range(args.repeats)]
    seconds, rss = [r[0] for r in runs], [r[1] for r in runs]
    record = {"claim": "digitlab reproduce: < 4 s wall-clock and < 1.5 GB peak memory on 2 CPU cores",
              "runs_s": seconds, "median_s": statistics.median(seconds), "peak_rss_mb": max(rss)}
    print(f"digitlab reproduce: median {record['median_s']:.2f} s of {[round(s, 2) for s in seconds]}, "
          f"peak RSS {record['peak_rss_mb']:.0f} MB")
    print(write_record("reproduce_time", record))


if __name__ == "__main__":
    main()
