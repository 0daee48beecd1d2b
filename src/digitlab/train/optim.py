"""Optimizers from scratch: the book's BasicOptim, and SGD and Adam on one small base class.

State lives in the optimizer (keyed by parameter), hyper-parameters live in param-group dicts so that schedules
and lr_find set `lr` and `mom` the same way for every optimizer. Tests check SGD and Adam against torch.optim.
"""

from __future__ import annotations

from typing import Iterable

import torch


class BasicOptim:
    """The book's first optimizer: p -= p.grad * lr for every parameter."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float):
        self.params, self.lr = list(params), lr

    def step(self) -> None:
        for p in self.params:
            p.data -= p.grad.data * self.lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


class Optimizer:
    """Base: loops over parameters under no_grad, calling `regularize` then `update` for each."""

    defaults: dict = {}

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float, **hypers):
        params = list(params)
        if not params:
            raise ValueError("the optimizer got no parameters: does the model have any?")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        hypers = {**self.defaults, "lr": lr, **hypers}
        self.check(hypers)
        self.param_groups = [{**hypers, **g, "params": list(g["params"])} for g in groups]
        self.state: dict[torch.Tensor, dict] = {}

    @staticmethod
    def check(h: dict) -> None:
        for name in ("lr", "wd", "eps"):
            if name in h and not h[name] >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {h[name]!r}.")
        if "mom" in h and not 0 <= h["mom"] < 1:
            raise ValueError(f"mom must be in [0, 1), got {h['mom']!r}.")
        if "sqr_mom" in h and not 0 <= h["sqr_mom"] < 1:
            raise ValueError(f"sqr_mom must be in [0, 1), got {h['sqr_mom']!r}.")

    @property
    def params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state.setdefault(p, {})
                    self.regularize(p, group, state)
                    self.update(p, group, state)

    def regularize(self, p: torch.Tensor, group: dict, state: dict) -> None:
        """Weight decay; by default none."""

    def update(self, p: torch.Tensor, group: dict, state: dict) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict:
        """Hyper-parameters per group and state per parameter (by position), for checkpoints."""
        index = {p: i for i, p in enumerate(self.params)}
        return {"groups": [{k: v.item() if isinstance(v, torch.Tensor) else v for k, v in g.items() if k != "params"}
                           for g in self.param_groups],
                "state": {index[p]: s for p, s in self.state.items()}}

    def load_state_dict(self, sd: dict) -> None:
        if len(sd["groups"]) != len(self.param_groups):
            raise ValueError("optimizer state has a different number of parameter groups than this optimizer.")
        for g, saved in zip(self.param_groups, sd["groups"]):
            for name, value in saved.items():
                set_group_hyper(g, name, value)
        params = self.params
        self.state = {params[int(i)]: s for i, s in sd["state"].items()}


class SGD(Optimizer):
    """SGD with optional momentum (`mom`), Nesterov momentum and L2 weight decay (`wd`), as torch.optim.SGD.

    With `capturable=True` (one param group), lr and mom are 0-d tensors on the parameters' device and the update
    is a handful of foreach ops over all parameters at once: the step reads no Python number that changes, so it
    can be captured once in a CUDA graph and replayed while a schedule moves lr and mom (`set_hyper` fills the
    tensors: a kernel, no host sync). The fast path (train/fast.py) trains with it.
    """

    defaults = {"mom": 0.0, "wd": 0.0, "nesterov": False}

    def __init__(self, params, lr: float, capturable: bool = False, **hypers):
        super().__init__(params, lr, **hypers)
        self.capturable = capturable
        if capturable:
            if len(self.param_groups) != 1:
                raise ValueError("a capturable SGD takes one parameter group.")
            group = self.param_groups[0]
            group["params"] = [p for p in group["params"] if p.requires_grad]
            device = group["params"][0].device
            group["lr"] = torch.tensor(float(group["lr"]), device=device)
            group["mom"] = torch.tensor(float(group["mom"]), device=device)
            for p in group["params"]:  # mom * 0 + g = g: the same first step as torch's
                self.state[p] = {"mom_buf": torch.zeros_like(p)}
            # plain lists for the step: torch.compile traces attribute lists as the old TensorSGD did, with no
            # lookups in a dict keyed by tensors (those broke CUDA-graph capture of the compiled step)
            self.flat_params = list(group["params"])
            self.bufs = [self.state[p]["mom_buf"] for p in self.flat_params]

    def step(self) -> None:
        if self.capturable:
            self.foreach_step()
        else:
            super().step()

    def regularize(self, p, group, state):
        if group["wd"]:
            state["g"] = p.grad.add(p, alpha=group["wd"])

    def update(self, p, group, state):
        g = state.pop("g", p.grad)
        if group["mom"]:
            buf = state.get("mom_buf")
            buf = g.clone() if buf is None else buf.mul_(group["mom"]).add_(g)
            state["mom_buf"] = buf
            g = g.add(buf, alpha=group["mom"]) if group["nesterov"] else buf
        p.add_(g, alpha=-group["lr"])

    @torch.no_grad()
    def foreach_step(self) -> None:
        """The capturable update: every parameter at once, lr and mom read on the device."""
        group, params, bufs = self.param_groups[0], self.flat_params, self.bufs
        grads = [p.grad for p in params]
        if group["wd"]:
            grads = torch._foreach_add(grads, params, alpha=group["wd"])
        torch._foreach_mul_(bufs, group["mom"])
        torch._foreach_add_(bufs, grads)
        if group["nesterov"]:
            update = torch._foreach_mul(bufs, group["mom"])
            torch._foreach_add_(update, grads)
        else:
            update = [b.clone() for b in bufs]
        torch._foreach_mul_(update, group["lr"])
        torch._foreach_sub_(params, update)

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        if self.capturable:  # the step's buffers stay the same tensors (a captured graph holds them): copy in
            for p, buf in zip(self.flat_params, self.bufs):
                buf.copy_(self.state[p]["mom_buf"])
                self.state[p]["mom_buf"] = buf

    def reset(self) -> None:
        """Forget the momentum, in place (a new run with the same tensors, under the same captured graph)."""
        for state in self.state.values():
            if "mom_buf" in state:
                state["mom_buf"].zero_()


class Adam(Optimizer):
    """Adam with bias correction; `wd` is decoupled weight decay (AdamW) unless `decouple_wd=False` (L2).

    `update` is the algorithm, one parameter at a time. `step` hands whole groups of dense float parameters to
    torch's fused Adam kernel instead (the same arithmetic in one pass over memory: about 3x faster for a
    ResNet-18, whose step is memory-bound); `fused=False` keeps the per-parameter path.
    """

    defaults = {"mom": 0.9, "sqr_mom": 0.999, "eps": 1e-8, "wd": 0.0, "decouple_wd": True}

    def __init__(self, params, lr: float, fused: bool = True, **hypers):
        super().__init__(params, lr, **hypers)
        self.fused = fused and hasattr(torch, "_fused_adamw_")

    @staticmethod
    def init_state(p: torch.Tensor, state: dict) -> dict:
        """A parameter's first step: count 0, both moving averages at zero (in its layout)."""
        if not state:
            state.update(step=0, avg=torch.zeros_like(p), sqr_avg=torch.zeros_like(p))
        return state

    def regularize(self, p, group, state):
        if group["wd"] and group["decouple_wd"]:
            p.mul_(1 - group["lr"] * group["wd"])

    def update(self, p, group, state):
        g = p.grad if group["decouple_wd"] or not group["wd"] else p.grad.add(p, alpha=group["wd"])
        self.init_state(p, state)
        state["step"] += 1
        b1, b2, t = group["mom"], group["sqr_mom"], state["step"]
        state["avg"].lerp_(g, 1 - b1)
        state["sqr_avg"].mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (state["sqr_avg"] / (1 - b2**t)).sqrt_().add_(group["eps"])
        p.addcdiv_(state["avg"], denom, value=-group["lr"] / (1 - b1**t))

    @torch.no_grad()
    def step(self) -> None:
        if not self.fused:
            return super().step()
        for group in self.param_groups:
            batches: dict[tuple, list[torch.Tensor]] = {}  # one kernel call per (step count, device, dtype)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.init_state(p, self.state.setdefault(p, {}))
                if not fusable(p, state):
                    self.regularize(p, group, state)
                    self.update(p, group, state)
                    continue
                state["step"] += 1
                batches.setdefault((state["step"], p.device, p.dtype), []).append(p)
            kernel = torch._fused_adamw_ if group["decouple_wd"] else torch._fused_adam_
            for (t, device, _), ps in batches.items():
                steps = [torch.tensor(float(t), device=device)] * len(ps)  # read, not written, by the kernel
                params, grads, avgs, sqr_avgs = zip(*(dense(p, p.grad, self.state[p]["avg"], self.state[p]["sqr_avg"])
                                                      for p in ps))
                kernel(list(params), list(grads), list(avgs), list(sqr_avgs), [], steps, lr=group["lr"],
                       beta1=group["mom"], beta2=group["sqr_mom"], weight_decay=group["wd"], eps=group["eps"],
                       amsgrad=False, maximize=False)


def dense(*ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A parameter, its gradient and its state (all of one layout, see `fusable`) as contiguous tensors: a
    channels-last 4-d tensor as the (N, H, W, C) view of its memory. The fused kernel would otherwise copy each
    such tensor to a contiguous clone and back: 2.8 ms a step for the ResNet-18's three 256x256x3x3 weights alone.
    The update is elementwise, so any view that pairs the same elements will do."""
    if ts[0].is_contiguous():
        return ts
    return tuple(t.permute(0, 2, 3, 1) for t in ts)


def fusable(p: torch.Tensor, state: dict) -> bool:
    """Whether torch's fused Adam kernel can take this parameter: dense, floating point, on a CPU or CUDA device,
    contiguous or channels-last, with its gradient and state of the same dtype and layout. On CPU (torch 2.13)
    the kernel silently pairs the wrong elements when a channels-last parameter has a contiguous gradient
    (torch.optim.AdamW(fused=True) too; CUDA refuses such tensors), so any mismatch takes the per-parameter path."""
    tensors = (p, p.grad, state["avg"], state["sqr_avg"])
    floats = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
    return (p.device.type in ("cpu", "cuda") and p.dtype in floats
            and not p.grad.is_sparse and p.layout == torch.strided
            and all(t.dtype == p.dtype and t.shape == p.shape and t.stride() == p.stride() for t in tensors)
            and (p.is_contiguous() or (p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last))))


def AdamW(params, lr: float, wd: float = 0.01, **hypers) -> Adam:
    """Adam with decoupled weight decay."""
    return Adam(params, lr, wd=wd, decouple_wd=True, **hypers)


def set_group_hyper(group: dict, name: str, value) -> None:
    """Set one hyper-parameter of a param group; a tensor-valued one (capturable SGD) is filled in place."""
    if isinstance(group.get(name), torch.Tensor):
        group[name].fill_(value)
    else:
        group[name] = value


def set_hyper(opt, name: str, value: float) -> None:
    """Set a hyper-parameter on every param group (or on a BasicOptim): how schedules and lr_find set lr and mom."""
    if hasattr(opt, "param_groups"):
        for g in opt.param_groups:
            set_group_hyper(g, name, value)
    else:
        setattr(opt, name, value)
