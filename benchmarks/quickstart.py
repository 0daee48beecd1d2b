"""The README's first command, run as a user runs it: `digitlab train --task digits --model cnn --epochs 2 --lr
0.05`, its wall-clock time (Python start-up and the run record included) and its test accuracy.

Run: python -m benchmarks.quickstart [--keep DIR]   (--keep leaves the run folder there, e.g. for
`python -m benchmarks.predict_speed --run DIR/cnn`)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import timed, write_record

COMMAND = ["train", "--task", "digits", "--model", "cnn", "--epochs", "2", "--lr", "0.05", "--name", "cnn", "-q"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="write the run folder here (default: a temporary folder)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.keep or Path(tmp)
        cmd = [str(Path(sys.executable).parent / "digitlab"), *COMMAND, "--runs", str(runs)]
        seconds, proc = timed(subprocess.run, cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"digitlab train failed: {proc.stderr}")
        summary = json.loads((runs / "cnn" / "summary.json").read_text())
    record = {"claim": "the README's first command: its time on 2 CPU cores and its test accuracy",
              "command": "digitlab " + " ".join(COMMAND), "wall_s": seconds, "accuracy": summary["accuracy"],
              "errors": summary["errors"], "train_seconds": summary["train_seconds"]}
    print(json.dumps(record, indent=2))
    print(f"wrote {write_record('quickstart', record)}")
    return record


if __name__ == "__main__":
    main()
