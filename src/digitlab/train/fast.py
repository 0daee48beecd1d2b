"""The fast path: ten-digit training with nothing between the data and the arithmetic. One code path for CPU and GPU.

What makes it fast, and why each piece is there:
- the whole data set lives on the device as uint8 (47 MB); each epoch is one gather and one augmentation pass
  over all 60000 images (one grid_sample call per chunk instead of one per batch);
- the model runs channels-last under bf16 autocast (tensor cores on GPU, AMX on this CPU);
- the optimizer (TensorSGD) keeps lr and momentum in device tensors and updates every parameter with a few
  foreach ops, so on GPU the whole step (forward, loss, backward, update, loss sum) is captured once as a CUDA
  graph and each step is one replay: a small CNN's step is otherwise bound by kernel-launch overhead (on an H200,
  4.6-6x per epoch);
- with `compile`, torch.compile fuses the step's ~115 small kernels before the graph is captured (1.4-1.8x more);
- nothing reads a device value inside an epoch: the loss is summed on the device and read once per epoch.
Measurements and the profile behind these choices: benchmarks/NOTES.md.

The same seed gives the same weights, data order and augmentation on CPU and GPU (they are drawn on the CPU).
A trainer is built once per (model, batch size): `run(seed)` re-initialises the same tensors in place, so the
captured graph is reused across seeds and the first timed step is a warm one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.augment import random_affine
from ..data.loader import epoch_permutation
from ..data.tasks import TaskData, to_input
from ..errors import ConfigError
from ..models.registry import build_model
from .losses import cross_entropy, softmax
from .metrics import exact_accuracy
from .optim import TensorSGD
from .schedule import one_cycle


AUG_CHUNK = 10_000  # images per grid_sample call: bounds the memory of the sampling grid (N x 28 x 28 x 2 floats)


def compile_in_this_process() -> None:
    """Have torch.compile build its kernels in this process, without its pool of compile workers (one per core).
    The pool starts in the background at the first compile; when the compile cache makes compiling quick, it is
    still starting while the timed runs begin and takes the CPU the host needs to queue the GPU's work. Measured on
    an H200 (benchmarks/gpu_first_runs.py, fastcnn 8 epochs, a fresh process): the first runs after the warm-up
    took 2.13, 2.05 and 1.50 s, then 0.76 s; with one compile thread 0.76-0.83 s from the first. Compiling from a
    cold cache takes longer this way, but that is warm-up, outside the clock."""
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = 1


@dataclass
class FastConfig:
    """A fast-path recipe: one-cycle SGD (Nesterov, momentum cycled 0.95-0.85), label smoothing, augmentation."""
    model: str = "fastcnn"
    epochs: int = 10
    bs: int = 256
    lr: float = 0.2
    wd: float = 5e-4
    label_smoothing: float = 0.1
    augment: bool = True
    aug_shift: float = 2.0        # augmentation strength: pixels, degrees, zoom (data/augment.py random_affine)
    aug_degrees: float = 10.0
    aug_scale: float = 0.1
    precision: str = "bf16"       # bf16 (autocast) or fp32
    graphs: bool | None = None    # capture the step as a CUDA graph; None: on CUDA only
    compile: bool = False         # torch.compile forward+loss and the update (on CUDA only: there it fuses the
                                  # small kernels that bound a step; it costs 10-25 s of warm-up)
    fused_loss: bool = True       # PyTorch's fused cross-entropy (equal to ours: tests/test_losses.py), 1 kernel not ~14
    eval_bs: int = 2000
    tta: bool = False             # the final score averages the test-time shifts (recipes.TTA_SHIFTS), timed too

    def __post_init__(self):
        if self.precision not in ("bf16", "fp32"):
            raise ConfigError(f"precision must be bf16 or fp32, got {self.precision!r}.")
        if self.epochs < 1 or self.bs < 1 or self.lr <= 0:
            raise ConfigError("epochs and bs must be at least 1 and lr positive.")
        if min(self.aug_shift, self.aug_degrees, self.aug_scale) < 0:
            raise ConfigError("aug_shift, aug_degrees and aug_scale are strengths: each must be 0 or more.")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FastResult:
    seed: int
    accuracy: float
    seconds: float                # first step to final evaluation, device synchronised
    epochs: int
    history: list = field(default_factory=list)  # per epoch: train_loss (and accuracy, seconds when tracked)


class FastTrainer:
    """Trains `cfg.model` on a task's data on `device`; see the module docstring."""

    def __init__(self, cfg: FastConfig, data: TaskData, device: str | torch.device = "cpu"):
        self.cfg, self.device = cfg, torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.use_graph = self.cuda if cfg.graphs is None else (cfg.graphs and self.cuda)
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # algorithms chosen in warm-up, before capture
        self.x_train, self.y_train = data.train.images.to(self.device), data.train.labels.to(self.device)
        self.x_valid, self.y_valid = data.valid.images.to(self.device), data.valid.labels.to(self.device)
        self.classes, self.n_classes = tuple(data.classes), len(data.classes)
        self.steps_per_epoch = len(self.x_train) // cfg.bs  # drop the last partial batch: static shapes
        if self.steps_per_epoch < 1:
            raise ConfigError(f"batch size {cfg.bs} is larger than the {len(self.x_train)} training images.")
        self.model = build_model(cfg.model, self.n_classes).to(self.device, memory_format=torch.channels_last)
        self.opt = TensorSGD(self.model.parameters(), cfg.lr, mom=0.95, wd=cfg.wd, nesterov=True)
        self.xb = torch.zeros(cfg.bs, 1, 28, 28, device=self.device)
        self.yb = torch.zeros(cfg.bs, dtype=torch.long, device=self.device)
        self.loss_sum = torch.zeros((), device=self.device)
        self.graph = None
        self.staging: dict[tuple, torch.Tensor] = {}  # pinned host buffers for upload(), one per slot
        self.forward_loss, self.update = self.plain_forward_loss, self.opt.step
        if cfg.compile and self.cuda:  # compiled on the first step (the warm-up); evaluation keeps the plain model
            compile_in_this_process()
            self.forward_loss, self.update = torch.compile(self.forward_loss), torch.compile(self.update)

    # --- the step -------------------------------------------------------------------------------------------
    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16",
                              cache_enabled=False)  # a cached cast would be freed under a captured graph

    def plain_forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            out = self.model(x)
        if self.cfg.fused_loss:
            return F.cross_entropy(out.float(), y, label_smoothing=self.cfg.label_smoothing)
        return cross_entropy(out.float(), y, self.cfg.label_smoothing)

    def train_step(self) -> None:
        """Forward, loss, backward, update on the static batch (self.xb, self.yb); the loss is summed on device."""
        loss = self.forward_loss(self.xb, self.yb)
        loss.backward()
        self.update()
        self.loss_sum += loss.detach()

    def step(self) -> None:
        if self.graph is not None:
            self.graph.replay()  # the captured backward overwrites the gradients: no zeroing needed
        else:
            self.train_step()
            self.opt.zero_grad()

    def capture(self) -> None:
        """Record the step as a CUDA graph (after warm-up steps on a side stream, as PyTorch's docs require),
        then put back the weights, buffers and momentum the warm-up changed."""
        saved = [t.clone() for t in self.state_tensors()]
        self.xb.copy_(to_input(self.x_train[: self.cfg.bs]))
        self.yb.copy_(self.y_train[: self.cfg.bs])
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self.train_step()
                self.opt.zero_grad()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.train_step()
        with torch.no_grad():
            for t, s in zip(self.state_tensors(), saved):
                t.copy_(s)
        self.graph = graph

    def state_tensors(self) -> list[torch.Tensor]:
        """Everything a step changes: parameters, BatchNorm statistics, momentum, the loss sum."""
        return [*self.model.state_dict().values(), *self.opt.bufs, self.loss_sum]

    # --- data -----------------------------------------------------------------------------------------------
    def epoch_data(self, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This epoch's shuffled (and augmented) training images as floats, and their labels."""
        order = epoch_permutation(len(self.x_train), seed, epoch)[: self.steps_per_epoch * self.cfg.bs]
        order = self.upload(order, ("order", epoch))
        x = to_input(self.x_train.index_select(0, order))
        if self.cfg.augment:
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7)
            theta = random_affine(len(x), g, self.cfg.aug_shift, self.cfg.aug_degrees, self.cfg.aug_scale)
            theta = self.upload(theta, ("theta", epoch))
            for i in range(0, len(x), AUG_CHUNK):
                part = x[i:i + AUG_CHUNK]
                grid = F.affine_grid(theta[i:i + AUG_CHUNK], list(part.shape), align_corners=False)
                x[i:i + AUG_CHUNK] = F.grid_sample(part, grid, mode="bilinear", padding_mode="zeros",
                                                   align_corners=False)
        return x, self.y_train.index_select(0, order)

    def upload(self, t: torch.Tensor, slot: tuple | None = None) -> torch.Tensor:
        """A CPU tensor to the device without blocking the host, through page-locked (pinned) memory: a plain
        copy from pageable memory would make the host wait for the GPU to drain at every epoch boundary.

        With a `slot` (say ("order", epoch)), through a pinned buffer kept for that slot and reused run after run.
        Pinning fresh memory is slow while the GPU is busy, and the host runs epochs ahead of the GPU, so a run
        used to pin two new buffers an epoch: on the H100 the first three runs after the warm-up took 2.0-2.2 s
        instead of 0.78 s (fastcnn, 8 epochs), until PyTorch's pinned-memory cache had grown enough."""
        if not self.cuda:
            return t
        if slot is None:
            return t.pin_memory().to(self.device, non_blocking=True)
        buf = self.pinned(slot, t.shape, t.dtype)
        buf.copy_(t)  # safe: run() waits for the device before its first epoch, so no copy from buf is pending
        return buf.to(self.device, non_blocking=True)

    def pinned(self, slot: tuple, shape, dtype: torch.dtype) -> torch.Tensor:
        """The pinned host buffer kept for `slot`; made (again) when the shape or dtype asked for differs."""
        buf = self.staging.get(slot)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self.staging[slot] = torch.empty(shape, dtype=dtype, pin_memory=True)
        return buf

    def reserve_staging(self, n_epochs: int) -> None:
        """Pin the buffers that `n_epochs` epochs upload through (each epoch's order and augmentation parameters)
        now, outside the timed run: a warm-up run of one epoch then readies the trainer for its full runs."""
        if not self.cuda:
            return
        n = self.steps_per_epoch * self.cfg.bs
        for epoch in range(n_epochs):
            self.pinned(("order", epoch), (n,), torch.int64)  # epoch_permutation's dtype
            if self.cfg.augment:
                self.pinned(("theta", epoch), (n, 2, 3), torch.float32)  # random_affine's shape and dtype

    # --- runs -----------------------------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """Fresh weights for `seed` (the same initialisation as the Learner path), written into the existing
        tensors so a captured graph stays valid; zero momentum and loss sum."""
        from .trainer import seed_everything

        seed_everything(seed)
        fresh = build_model(self.cfg.model, self.n_classes).state_dict()
        with torch.no_grad():
            for name, t in self.model.state_dict().items():
                t.copy_(fresh[name])
        self.opt.reset()
        self.loss_sum.zero_()

    def run(self, seed: int = 0, track: bool = False, epochs: int | None = None, strict: bool = False) -> FastResult:
        """Train from scratch with `seed` for the config's epochs (or `epochs`: a warm-up run); evaluate at the
        end, and after every epoch with `track`. `strict` (CUDA) makes any host synchronisation inside the
        training loop an error: the proof that the host only queues work."""
        if self.use_graph and self.graph is None:
            self.capture()
        self.reset(seed)
        cfg, n_epochs = self.cfg, epochs or self.cfg.epochs
        self.reserve_staging(max(n_epochs, cfg.epochs))
        total = n_epochs * self.steps_per_epoch
        schedule = [one_cycle(i, total, cfg.lr) for i in range(total)]
        history = []
        self.sync()
        start = time.perf_counter()
        for epoch in range(n_epochs):
            if strict and self.cuda:
                torch.cuda.set_sync_debug_mode("error")
            try:
                x, y = self.epoch_data(seed, epoch)
                for i in range(self.steps_per_epoch):
                    self.opt.set_hypers(*schedule[epoch * self.steps_per_epoch + i])
                    self.xb.copy_(x[i * cfg.bs:(i + 1) * cfg.bs])
                    self.yb.copy_(y[i * cfg.bs:(i + 1) * cfg.bs])
                    self.step()
            finally:
                if strict and self.cuda:
                    torch.cuda.set_sync_debug_mode("default")
            if track:
                entry = {"epoch": epoch, "train_loss": self.loss_sum.item() / self.steps_per_epoch,
                         "accuracy": self.accuracy(), "seconds": time.perf_counter() - start}
                self.loss_sum.zero_()
                history.append(entry)
        accuracy = self.tta_accuracy() if cfg.tta else self.accuracy()
        seconds = time.perf_counter() - start
        if not track:
            history.append({"epoch": n_epochs - 1, "train_loss": self.loss_sum.item() / total})
        return FastResult(seed, accuracy, seconds, n_epochs, history)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Scores (N, C) for float images (N, 1, 28, 28) on the device, in eval mode."""
        self.model.eval()
        with self.autocast():
            out = torch.cat([self.model(x[i:i + self.cfg.eval_bs]).float()
                             for i in range(0, len(x), self.cfg.eval_bs)])
        self.model.train()
        return out

    def accuracy(self) -> float:
        """Test-set accuracy: one host read."""
        return exact_accuracy(self.logits(to_input(self.x_valid)).argmax(1), self.y_valid)

    def tta_accuracy(self) -> float:
        """Test-set accuracy of the class probabilities averaged over the TTA shifts."""
        return exact_accuracy(self.test_probs(True).argmax(1), self.y_valid.cpu())

    def test_probs(self, tta: bool = False) -> torch.Tensor:
        """Class probabilities on the test set (on the CPU), optionally averaged over the TTA shifts."""
        from ..recipes import TTA_SHIFTS, shift_images

        x = to_input(self.x_valid)
        shifts = TTA_SHIFTS if tta else TTA_SHIFTS[:1]
        return (sum(softmax(self.logits(shift_images(x, dx, dy))) for dx, dy in shifts) / len(shifts)).cpu()


def record_fast_run(trainer: FastTrainer, result: FastResult, run: Path) -> dict:
    """Write a fast-path run into a run folder like `digitlab train` does (config, metrics, summary, weights), so
    that `predict`, `evaluate`, `ensemble` and `serve` take it; the summary."""
    from ..runs import MODEL_FILE, environment, write_json, write_metrics
    from ..weights import save_model

    from ..data.tasks import TASKS

    classes = list(trainer.classes)
    task = next((name for name, c in TASKS.items() if c == trainer.classes), "digits")
    config = {"task": task, **trainer.cfg.to_dict(), "seed": result.seed, "path": "fast"}
    write_json(run / "config.json", {"config": config, "environment": environment(trainer.device)})
    write_metrics(run, result.history)
    correct = round(result.accuracy * len(trainer.y_valid))
    summary = {"status": "finished", "accuracy": result.accuracy, "errors": len(trainer.y_valid) - correct,
               "n_valid": len(trainer.y_valid), "best_accuracy": result.accuracy, "epochs_done": result.epochs,
               "train_seconds": result.seconds, "device": str(trainer.device), "classes": classes}
    write_json(run / "summary.json", summary)
    meta = {"model": trainer.cfg.model, "classes": classes, "task": task, "accuracy": result.accuracy,
            "trained": time.strftime("%Y-%m-%dT%H:%M:%S"), "epochs": result.epochs, "config": config}
    save_model(trainer.model, run / MODEL_FILE, meta)
    return summary


def fast_fit(cfg: FastConfig, seeds=(0,), data: TaskData | None = None, device: str = "auto",
             warmup: bool | None = None, track: bool = False,
             after_run: Callable[[FastTrainer, FastResult], None] | None = None,
             ) -> tuple[FastTrainer, list[FastResult]]:
    """Train once per seed with one trainer. With `warmup` (default: on CUDA), an untimed one-epoch run first
    settles allocations, cuDNN's kernel choices and the CUDA graph ("time after a warm-up run"). `after_run` sees
    the trainer after each seed's run, while it still holds that run's weights (the next run overwrites them)."""
    from ..data.tasks import load_task
    from .trainer import resolve_device

    trainer = FastTrainer(cfg, data or load_task("digits"), resolve_device(device))
    if trainer.cuda if warmup is None else warmup:
        trainer.run(seeds[0], epochs=1)
    results = []
    for seed in seeds:
        results.append(trainer.run(seed, track))
        if after_run is not None:
            after_run(trainer, results[-1])
    return trainer, results
