"""The fast path: ten-digit training with nothing between the data and the arithmetic. One code path for CPU and GPU.

What makes it fast, and why each piece is there:
- the whole data set lives on the device as uint8 (47 MB); each epoch is one gather and one augmentation pass
  over all 60000 images (one grid_sample call per chunk instead of one per batch);
- the model runs channels-last in the precision the device does natively (digitlab.hardware: bf16 autocast on
  bf16 tensor cores and on CPUs with AMX or AVX-512 BF16, fp16 with a loss scaler on fp16-only cards, else fp32);
- the optimizer (SGD, capturable) keeps lr and momentum in device tensors and updates every parameter with a few
  foreach ops, so on GPU the whole step (forward, loss, backward, update, loss sum) is captured once as a CUDA
  graph and each step is one replay: a small CNN's step is otherwise bound by kernel-launch overhead;
- with `compile`, torch.compile fuses the step's ~115 small kernels before the graph is captured;
- nothing reads a device value inside an epoch: the loss is summed on the device and read once per epoch.
What each piece bought, measured, and the profile behind it: benchmarks/NOTES.md ("The GPU path"). It runs a TrainConfig whose engine is
"fast": one-cycle SGD (Nesterov, momentum cycled 0.95-0.85), label smoothing, augmentation.

The same seed gives the same weights, data order and augmentation on CPU and GPU (they are drawn on the CPU).
A trainer is built once per config: `run(seed)` re-initialises the same tensors in place, so the
captured graph is reused across seeds and the first timed step is a warm one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import inference
from ..config import TrainConfig
from ..data.augment import random_affine
from ..data.loader import epoch_permutation
from ..data.mnist import Split
from ..data.tasks import TaskData, load_task_for, to_input
from ..errors import ConfigError
from ..hardware import resolve_precision
from ..models.layers import set_normalization
from ..models.registry import build_model
from ..weights import starting_weights
from .loss_scale import LossScaler
from .losses import cross_entropy, uniform_cross_entropy
from .metrics import exact_accuracy
from .optim import SGD
from .result import TrainResult, final_scores, summarize
from .runtime import resolve_device, seed_everything
from .schedule import one_cycle


AUG_CHUNK = 10_000  # images per grid_sample call: bounds the memory of the sampling grid (N x 28 x 28 x 2 floats)
EVAL_BS = 2000     # images per forward pass when scoring


def compile_in_this_process() -> None:
    """Have torch.compile build its kernels in this process, without its pool of compile workers (one per core).
    The pool starts in the background at the first compile; when the compile cache makes compiling quick, it is
    still starting while the timed runs begin and takes the CPU the host needs to queue the GPU's work: the first
    timed runs were almost 3x slower (benchmarks/NOTES.md, "Fifth session").
    Compiling from a cold cache takes longer this way, but that is warm-up, outside the clock."""
    import torch._inductor.config as inductor_config  # deferred: the compiler loads only for a compiled run

    inductor_config.compile_threads = 1


class FastTrainer:
    """Trains `cfg.model` on a task's data on `device`; see the module docstring."""

    def __init__(self, cfg: TrainConfig, data: TaskData, device: str | torch.device = "cpu"):
        if cfg.engine != "fast":
            cfg = cfg.replace(engine="fast")  # validates that the fast engine can run it
        self.cfg, self.data, self.device = cfg, data, torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.precision = resolve_precision(cfg.precision, self.device)
        # fp16's scaler skips overflowing steps on the host: a captured graph cannot
        self.scaler = LossScaler() if self.precision.loss_scaling else None
        self.use_graph = (self.cuda if cfg.graphs is None else (cfg.graphs and self.cuda)) and self.scaler is None
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # algorithms chosen in warm-up, before capture
        self.x_train, self.y_train = data.train.images.to(self.device), data.train.labels.to(self.device)
        self.x_valid, self.y_valid = data.valid.images.to(self.device), data.valid.labels.to(self.device)
        self.classes, self.n_classes = tuple(data.classes), len(data.classes)
        self.steps_per_epoch = len(self.x_train) // cfg.bs  # drop the last partial batch: static shapes
        if self.steps_per_epoch < 1:
            raise ConfigError(f"batch size {cfg.bs} is larger than the {len(self.x_train)} training images.")
        self.model = set_normalization(build_model(cfg.model, self.n_classes), data.mean, data.std).to(
            self.device, memory_format=torch.channels_last)
        self.opt = SGD(self.model.parameters(), cfg.lr, capturable=True, mom=0.95, wd=cfg.wd, nesterov=True)
        self.hypers = self.opt.param_groups[0]  # its lr and mom are device tensors the schedule fills
        self.xb = torch.zeros(cfg.bs, 1, 28, 28, device=self.device)
        self.yb = torch.zeros(cfg.bs, dtype=torch.long, device=self.device)
        self.ob, self.n_out = None, cfg.bs // 2  # outlier exposure: non-digits beside each batch, half as many
        if cfg.outlier_exposure:
            if data.outliers is None or len(data.outliers) < self.n_out:
                raise ConfigError(f"outlier_exposure needs at least {self.n_out} non-digit pictures beside the data "
                                  f"(data/outliers.py; load the data with load_task_for).")
            self.x_out = data.outliers.to(self.device)
            self.ob = torch.zeros(self.n_out, 1, 28, 28, device=self.device)
        self.loss_sum = torch.zeros((), device=self.device)
        self.last_loss = torch.zeros((), device=self.device)  # the step's loss (a static buffer under a graph)
        self.step_losses = torch.zeros(self.steps_per_epoch, device=self.device)  # this epoch's, read at its end
        self.graph = None
        self.staging: dict[tuple, torch.Tensor] = {}  # pinned host buffers for upload(), one per slot
        self.forward_loss, self.update = self.plain_forward_loss, self.opt.foreach_step
        if cfg.compile and self.cuda:  # compiled on the first step (the warm-up); evaluation keeps the plain model
            compile_in_this_process()
            self.forward_loss, self.update = torch.compile(self.forward_loss), torch.compile(self.update)

    # --- the step -------------------------------------------------------------------------------------------
    def autocast(self):
        # no cast cache: a cached cast would be freed under a captured graph
        return self.precision.autocast(self.device.type, cache_enabled=False)

    def plain_forward_loss(self, x: torch.Tensor, y: torch.Tensor, o: torch.Tensor | None = None) -> torch.Tensor:
        """The batch's loss; with non-digits `o` (outlier exposure) they go through the model in the same pass,
        and their uniform cross-entropy, weighted, is added."""
        with self.autocast():
            out = self.model(x if o is None else torch.cat([x, o])).float()
        out, out_o = (out, None) if o is None else (out[: len(y)], out[len(y):])
        if self.cfg.fused_loss:
            loss = F.cross_entropy(out, y, label_smoothing=self.cfg.label_smoothing)
        else:
            loss = cross_entropy(out, y, self.cfg.label_smoothing)
        return loss if o is None else loss + self.cfg.outlier_exposure * uniform_cross_entropy(out_o)

    def train_step(self) -> None:
        """Forward, loss, backward, update on the static batch (self.xb, self.yb, and self.ob under outlier
        exposure); the loss is summed on device."""
        loss = self.forward_loss(self.xb, self.yb, self.ob)
        if self.scaler is None:
            loss.backward()
            self.update()
        else:
            self.scaler.scaled(loss).backward()
            if self.scaler.unscale(self.model.parameters()):
                self.update()
        self.loss_sum += loss.detach()
        self.last_loss.copy_(loss.detach())

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
        if self.ob is not None:
            self.ob.copy_(to_input(self.x_out[: self.n_out]))
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
        return [*self.model.state_dict().values(), *(s["mom_buf"] for s in self.opt.state.values()), self.loss_sum,
                self.last_loss]

    # --- data -----------------------------------------------------------------------------------------------
    def epoch_data(self, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This epoch's shuffled (and augmented) training images as floats, and their labels."""
        order = epoch_permutation(len(self.x_train), seed, epoch)[: self.steps_per_epoch * self.cfg.bs]
        order = self.upload(order, ("order", epoch))
        x = self.augmented(to_input(self.x_train.index_select(0, order)), seed * 1_000_003 + epoch + 7,
                           ("theta", epoch))
        return x, self.y_train.index_select(0, order)

    def epoch_outliers(self, seed: int, epoch: int) -> torch.Tensor | None:
        """This epoch's non-digits (outlier exposure): n_out a step, drawn with replacement, augmented as the
        digits are; None without outlier exposure."""
        if self.ob is None:
            return None
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 11)
        pick = torch.randint(len(self.x_out), (self.steps_per_epoch * self.n_out,), generator=g)
        o = to_input(self.x_out.index_select(0, self.upload(pick, ("outliers", epoch))))
        return self.augmented(o, seed * 1_000_003 + epoch + 13, ("theta_outliers", epoch))

    def augmented(self, x: torch.Tensor, seed: int, slot: tuple) -> torch.Tensor:
        """x (N, 1, 28, 28) with the config's random shifts, rotations and zoom (in place), in chunks."""
        if not self.cfg.augment:
            return x
        g = torch.Generator().manual_seed(seed)
        theta = random_affine(len(x), g, self.cfg.aug_shift, self.cfg.aug_degrees, self.cfg.aug_scale,
                              self.cfg.aug_flip)
        theta = self.upload(theta, slot)
        for i in range(0, len(x), AUG_CHUNK):
            part = x[i:i + AUG_CHUNK]
            grid = F.affine_grid(theta[i:i + AUG_CHUNK], list(part.shape), align_corners=False)
            x[i:i + AUG_CHUNK] = F.grid_sample(part, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return x

    def upload(self, t: torch.Tensor, slot: tuple | None = None) -> torch.Tensor:
        """A CPU tensor to the device without blocking the host, through page-locked (pinned) memory: a plain
        copy from pageable memory would make the host wait for the GPU to drain at every epoch boundary.

        With a `slot` (say ("order", epoch)), through a pinned buffer kept for that slot and reused run after run.
        Pinning fresh memory is slow while the GPU is busy, and the host runs epochs ahead of the GPU, so a run
        used to pin two new buffers an epoch, and its first runs after the warm-up were slow until PyTorch's
        pinned-memory cache had grown enough (benchmarks/NOTES.md, "Fourth session: one H100")."""
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
            if self.ob is not None:
                m = self.steps_per_epoch * self.n_out
                self.pinned(("outliers", epoch), (m,), torch.int64)
                if self.cfg.augment:
                    self.pinned(("theta_outliers", epoch), (m, 2, 3), torch.float32)

    # --- runs -----------------------------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """Fresh weights for `seed` (the same initialisation as the Learner path), written into the existing
        tensors so a captured graph stays valid; zero momentum and loss sum."""
        seed_everything(seed)
        fresh = set_normalization(build_model(self.cfg.model, self.n_classes), self.data.mean, self.data.std).state_dict()
        if self.cfg.init_from:  # fine-tuning: the seed still orders and augments the data
            fresh = starting_weights(self.cfg.init_from, self.cfg.model, self.classes)
        with torch.no_grad():
            for name, t in self.model.state_dict().items():
                t.copy_(fresh[name])
        self.opt.reset()
        self.loss_sum.zero_()
        if self.scaler is not None:
            self.scaler = LossScaler()

    def prepare(self, seed: int, n_epochs: int) -> None:
        """Ready a run of `n_epochs` from scratch with `seed`: the graph captured (once), fresh weights, the
        pinned buffers and the one-cycle schedule of the whole run (step i's lr and momentum)."""
        if self.use_graph and self.graph is None:
            self.capture()
        self.reset(seed)
        self.seed, self.n_epochs = seed, n_epochs
        self.reserve_staging(max(n_epochs, self.cfg.epochs))
        total = n_epochs * self.steps_per_epoch
        self.schedule = [one_cycle(i, total, self.cfg.lr) for i in range(total)]

    def train_epoch(self, epoch: int, strict: bool = False) -> None:
        """Epoch `epoch` of the prepared run: every step queued, nothing read back (the loss is summed on the
        device, each step's loss kept in `step_losses`). `strict` (CUDA) makes any host synchronisation an error:
        the proof that the host only queues work."""
        cfg, spe = self.cfg, self.steps_per_epoch
        if strict and self.cuda:
            torch.cuda.set_sync_debug_mode("error")
        try:
            x, y = self.epoch_data(self.seed, epoch)
            o, n_out = self.epoch_outliers(self.seed, epoch), self.n_out
            for i in range(spe):
                lr, mom = self.schedule[epoch * spe + i]
                self.hypers["lr"].fill_(lr)
                self.hypers["mom"].fill_(mom)
                self.xb.copy_(x[i * cfg.bs:(i + 1) * cfg.bs])
                self.yb.copy_(y[i * cfg.bs:(i + 1) * cfg.bs])
                if o is not None:
                    self.ob.copy_(o[i * n_out:(i + 1) * n_out])
                self.step()
                self.step_losses[i].copy_(self.last_loss)
        finally:
            if strict and self.cuda:
                torch.cuda.set_sync_debug_mode("default")

    def epoch_loss(self) -> float:
        """The mean training loss since the last call (one host read), and the sum reset."""
        loss = self.loss_sum.item() / self.steps_per_epoch
        self.loss_sum.zero_()
        return loss

    def validate(self) -> dict:
        """valid_loss and accuracy of the validation split, computed on the device (two host reads per epoch)."""
        logits = inference.logits(self.model, self.x_valid, EVAL_BS, autocast=self.autocast)
        loss = F.cross_entropy(logits, self.y_valid)
        return {"valid_loss": loss.item(), "accuracy": exact_accuracy(logits.argmax(1), self.y_valid)}

    def run(self, seed: int = 0, epochs: int | None = None, strict: bool = False) -> TrainResult:
        """Train from scratch with `seed` for the config's epochs (or `epochs`: a warm-up run) without stopping
        between epochs, and score at the end (with test-time augmentation when the config asks): how speedruns
        and benchmarks time the engine. A run that reports each epoch, checkpoints or takes callbacks is
        `digitlab.train.fit` (FastLearner)."""
        cfg, n_epochs = self.cfg, epochs or self.cfg.epochs
        self.prepare(seed, n_epochs)
        self.sync()
        start = time.perf_counter()
        for epoch in range(n_epochs):
            self.train_epoch(epoch, strict)
        scores, probs = final_scores(lambda split: self.probs(split, cfg.tta), self.data)
        seconds = time.perf_counter() - start
        history = [{"epoch": n_epochs - 1, "train_loss": self.loss_sum.item() / (n_epochs * self.steps_per_epoch)}]
        self.loss_sum.zero_()
        run_cfg = cfg.replace(seed=seed, epochs=n_epochs)
        summary = summarize(run_cfg, self.model, scores, history, seconds, self.device, self.classes, self.precision)
        lrs = [lr for lr, _ in self.schedule]  # per-batch losses stay on the device, summed: only lrs are recorded
        return TrainResult(run_cfg, self.model, summary, history, lrs=lrs, probs=probs, data=self.data)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def probs(self, split: Split, tta: bool = False) -> torch.Tensor:
        """Class probabilities (on the CPU) of a split, optionally averaged over the TTA shifts; the validation
        split's images are already on the device, the test split's go up batch by batch when it is scored."""
        images = self.x_valid if split is self.data.valid else split.images
        return inference.class_probs(self.model, images, EVAL_BS, tta, self.autocast, self.cfg.aug_flip)

    def final_probs(self, tta: bool = False) -> torch.Tensor:
        """Class probabilities on the split a final score reads (the test split, else valid)."""
        return self.probs(self.data.final, tta)


def fast_fit(cfg: TrainConfig, seeds=(0,), data: TaskData | None = None, device: str = "auto",
             warmup: bool | None = None, after_run: Callable[[FastTrainer, TrainResult], None] | None = None,
             ) -> tuple[FastTrainer, list[TrainResult]]:
    """Train once per seed with one trainer. With `warmup` (default: on CUDA), an untimed one-epoch run first
    settles allocations, cuDNN's kernel choices and the CUDA graph ("time after a warm-up run"). `after_run` sees
    the trainer after each seed's run, while it still holds that run's weights (the next run overwrites them)."""
    trainer = FastTrainer(cfg, data or load_task_for(cfg), resolve_device(device))
    if trainer.cuda if warmup is None else warmup:
        trainer.run(seeds[0], epochs=1)
    results = []
    for seed in seeds:
        results.append(trainer.run(seed))
        if after_run is not None:
            after_run(trainer, results[-1])
    return trainer, results
