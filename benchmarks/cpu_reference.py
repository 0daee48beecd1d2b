"""python -m benchmarks.cpu_reference: the fast path's reference accuracies on the CPU (fp32, no CUDA graph), which
benchmarks/gpu.py compares its GPU runs against (same recipe, same seeds). Writes results/cpu-reference.json."""

from __future__ import annotations

from digitlab.config import TrainConfig
from digitlab.train.fast import fast_fit

from .common import write_record

# small enough to run here in a few minutes, long enough that accuracy is stable to a few hundredths of a point
REFERENCE = TrainConfig(engine="fast", model="fastcnn", epochs=2, augment=False)
SEEDS = (0, 1, 2)


def main() -> None:
    cfg = REFERENCE.replace(precision="fp32")
    _, runs = fast_fit(cfg, SEEDS, device="cpu", warmup=False)
    record = {"config": cfg.to_dict(), "runs": [{"seed": r.seed, "accuracy": r.accuracy, "seconds": r.seconds}
                                                for r in runs]}
    print(write_record("cpu-reference", record))
    for r in runs:
        print(f"seed {r.seed}: {r.accuracy:.4f} in {r.seconds:.1f}s")


if __name__ == "__main__":
    main()
