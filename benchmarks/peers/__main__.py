"""python -m benchmarks.peers: measure fastai's own chapter-4 last stage on this machine (see __init__.py).

    flock /tmp/torch.lock python -m benchmarks.peers [--seeds 42 1 2 3 4 5 6 7] [--threads 2]
"""

from __future__ import annotations

import argparse

from . import SEEDS, run_fastai


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=SEEDS[:3])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    print(f"wrote {run_fastai(args.seeds, args.threads)}")


if __name__ == "__main__":
    main()
