"""Dynamic loss scaling for fp16 training (what torch.amp.GradScaler does, written out so it can be read).

fp16 has 5 exponent bits: gradients below about 6e-8 flush to zero. The loss is multiplied by `scale` before the
backward pass, so the gradients are too; they are divided back before the update. A step whose gradients hold an
inf or a NaN (the scale was too large) is skipped and the scale halved; after `growth_interval` good steps in a row
it doubles. bf16 keeps fp32's exponent range and needs none of this. tests/test_precision.py checks the scale's
course against GradScaler's for the same steps.
"""

from __future__ import annotations

import torch


class LossScaler:
    """`scaled(loss)` to call backward on, then `unscale(params)`: True when the step may be taken."""

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000):
        self.scale, self.growth_factor, self.backoff_factor = init_scale, growth_factor, backoff_factor
        self.growth_interval, self.good_steps, self.skipped = growth_interval, 0, 0

    def scaled(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale

    @torch.no_grad()
    def unscale(self, params) -> bool:
        """Divide every gradient by the scale; update the scale; whether all gradients are finite (one host read:
        the step is skipped on the host, so the fp16 path does not capture a CUDA graph)."""
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, 1.0 / self.scale)
        finite = bool(torch.stack(torch._foreach_norm(grads)).isfinite().all()) if grads else True
        self.update(finite)
        return finite

    def update(self, finite: bool) -> None:
        if not finite:
            self.scale *= self.backoff_factor
            self.good_steps, self.skipped = 0, self.skipped + 1
            return
        self.good_steps += 1
        if self.good_steps == self.growth_interval:
            self.scale *= self.growth_factor
            self.good_steps = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "good_steps": self.good_steps, "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.good_steps, self.skipped = state["scale"], state["good_steps"], state["skipped"]
