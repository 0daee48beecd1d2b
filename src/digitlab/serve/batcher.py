"""Concurrent requests share forward passes: whatever arrived while the last batch ran goes in the next one.

The model runs on one worker thread, so the event loop keeps parsing requests meanwhile. No timer and no
waiting: a lone request runs at once as a batch of one; under load, batches grow to what piled up.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import torch

from ..predict import Classifier


class Batcher:
    """`await batcher.predict(x)`: (probabilities (C,), detector score or None) for one prepared (28, 28) input."""

    def __init__(self, clf: Classifier, max_batch: int = 64):
        self.clf, self.max_batch = clf, max_batch
        self.pending: list[tuple[torch.Tensor, asyncio.Future]] = []
        self.draining = False
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="digitlab-model")
        self.batches = self.items = 0  # counters for /api/health

    async def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.pending.append((x, fut))
        if not self.draining:
            self.draining = True
            loop.create_task(self.drain())
        return await fut

    async def drain(self) -> None:
        """Run batches until nothing is pending; requests arriving during a batch join the next one."""
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                batch, self.pending = self.pending[:self.max_batch], self.pending[self.max_batch:]
                xb = torch.stack([x for x, _ in batch])  # (N, 28, 28)
                try:
                    probs, scores = await loop.run_in_executor(self.executor, self.clf.predict_scores, xb)
                except Exception as e:  # the model failed: every waiting request gets the error, the server lives
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                self.batches, self.items = self.batches + 1, self.items + len(batch)
                scores = scores.tolist() if scores is not None else [None] * len(batch)
                for (_, fut), p, s in zip(batch, probs, scores):
                    if not fut.done():  # a client that went away leaves a cancelled future
                        fut.set_result((p, s))
        finally:
            self.draining = False

    def warm_up(self) -> None:
        """One forward pass before the first request, so it does not pay for PyTorch's first-call set-up."""
        self.clf.predict_scores(torch.zeros(8, 28, 28))

    def close(self) -> None:
        """Stop the model's thread; batches not yet started are dropped."""
        self.executor.shutdown(wait=False, cancel_futures=True)
