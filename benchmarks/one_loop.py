"""Claim checked: the fast engine run as a Learner (FastLearner: events, callbacks and per-epoch
checkpoints) costs at most 3% per epoch over the loop it replaced, and trains to the same weights.

Both in this process, alternated (`--rounds` of each, medians): the loop `digitlab train` ran on the fast engine
before it became a Learner (FastTrainer's epochs, each followed by reading the loss and scoring the validation
split, then the final scores), and `fit(cfg)` on the fast engine with the callbacks `digitlab train` adds
(progress lines, a checkpoint after every epoch into a temporary folder). Time per epoch: the whole run (final
scores included) over its epochs.

    python -m benchmarks.one_loop [--epochs 3] [--rounds 3]

Record: results/one-loop.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from digitlab.config import TrainConfig
from digitlab.data.tasks import load_task_for
from digitlab.hardware import describe_machine, machine_class
from digitlab.train.checkpoint import Checkpointer
from digitlab.train.fast import FastTrainer
from digitlab.train.fit import fit
from digitlab.train.progress import ProgressCallback
from digitlab.train.result import final_scores

from .common import write_record


def tracked_loop(trainer: FastTrainer, cfg: TrainConfig) -> list[dict]:
    """The fast engine's loop as `digitlab train` ran it before FastLearner: each epoch's loss and validation
    scores read, then the final scores."""
    trainer.prepare(cfg.seed, cfg.epochs)
    history = []
    for epoch in range(cfg.epochs):
        trainer.train_epoch(epoch)
        history.append({"epoch": epoch, "train_loss": trainer.epoch_loss(), **trainer.validate()})
    final_scores(lambda split: trainer.probs(split, cfg.tta), trainer.data)
    return history


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    cfg = TrainConfig(engine="fast", epochs=args.epochs, tta=False, seed=4)
    data = load_task_for(cfg)
    bare, learner, same = [], [], True
    trainer = FastTrainer(cfg, data)
    for _ in range(args.rounds):
        start = time.perf_counter()
        tracked_loop(trainer, cfg)
        bare.append((time.perf_counter() - start) / args.epochs)
        with tempfile.TemporaryDirectory() as tmp:
            cbs = [ProgressCallback(mode="quiet"), Checkpointer(Path(tmp) / "checkpoint.safetensors", config=cfg.to_dict(),
                                                                handle_signals=False)]
            start = time.perf_counter()
            result = fit(cfg, cbs, data=data)
            learner.append((time.perf_counter() - start) / args.epochs)
        theirs = result.model.state_dict()
        same &= all(torch.equal(v, theirs[k]) for k, v in trainer.model.state_dict().items())
    b, lrn = statistics.median(bare), statistics.median(learner)
    facts = describe_machine("cpu")
    record = {"claim": "FastLearner's epoch within 3% of the fast engine's own tracked loop, same weights",
              "config": cfg.to_dict(), "rounds": args.rounds, "bare_epoch_s": bare, "learner_epoch_s": learner,
              "median_bare_epoch_s": b, "median_learner_epoch_s": lrn, "overhead": lrn / b - 1,
              "same_weights": same, "bar_met": same and lrn / b - 1 <= 0.03,
              "machine_class": machine_class(facts), "precision": facts["precision"]}
    print(f"{machine_class(facts)}: the tracked loop {b:.2f} s/epoch, as a Learner {lrn:.2f} s/epoch "
          f"({(lrn / b - 1):+.1%}; a checkpoint each epoch included); same weights: {same}")
    print(write_record("one-loop", record))


if __name__ == "__main__":
    main()
