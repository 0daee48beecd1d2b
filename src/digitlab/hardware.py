"""What this machine does natively, and the one precision policy that every path that trains or scores reads.

`precision = "auto"` resolves per device from what it computes natively:
- CPU: bf16 only where oneDNN has bf16 matrix units (AMX, or AVX-512 BF16) and PyTorch dispatches to AVX-512
  kernels; elsewhere fp32. Measured on an AVX2-only EPYC: a fastcnn step at batch 256 took 135 ms in fp32 and
  1763 ms under bf16 autocast (every bf16 op emulated); on the AMX Xeon bf16 is the faster one
  (benchmarks/precision.py measures both on the machine it runs on).
- CUDA: bf16 from compute capability 8.0 (Ampere's bf16 tensor cores); fp16 with a loss scaler on 7.x (V100, T4:
  fp16 tensor cores only); fp32 before that (P100 and older have no tensor cores).
- anything else (MPS, ...): fp32.
An explicit precision wins. PyTorch's own switches (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA) are honoured, so an
AMX machine told `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` behaves, and chooses, as an AVX2 one.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass

import torch

from .errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below which it has no native bf16 matrix kernels
ONEDNN_NO_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


@dataclass(frozen=True)
class Precision:
    """The arithmetic a run uses: `name` (bf16, fp16 or fp32) and why it was chosen."""
    name: str
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    @property
    def loss_scaling(self) -> bool:
        """fp16's narrow exponent underflows small gradients: its backward pass needs a loss scaler."""
        return self.name == "fp16"

    def autocast(self, device_type: str, cache_enabled: bool = True) -> contextlib.AbstractContextManager:
        """The context a forward pass runs in: autocast to bf16/fp16, or nothing for fp32."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=self.dtype, cache_enabled=cache_enabled)


FP32 = Precision("fp32", "full precision (the default where nothing else is asked for)")


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda when a GPU is present; an unavailable device is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this machine has no CUDA GPU; use --device cpu.")
    return device


def cpu_bf16_rule(capability: str, amx: bool, avx512_bf16: bool, onednn_isa: str = "") -> tuple[bool, str]:
    """Whether a CPU with these facts runs bf16 natively, and why (a pure rule, so every case is testable)."""
    if not (amx or avx512_bf16):
        return False, f"no AMX or AVX-512 BF16 units (capability {capability}): bf16 would be emulated"
    if capability.upper() in ("DEFAULT", "AVX2", "ZVECTOR", "VSX", "NO AVX", ""):
        return False, f"PyTorch dispatches {capability} kernels here: bf16 would be emulated"
    if onednn_isa.upper() in ONEDNN_NO_BF16:
        return False, f"oneDNN is capped at {onednn_isa} (ONEDNN_MAX_CPU_ISA): no bf16 matrix kernels"
    units = "AMX" if amx else "AVX-512 BF16"
    return True, f"{units} bf16 matrix units ({capability})"


def cuda_precision_rule(major: int, minor: int) -> tuple[str, str]:
    """The precision a CUDA card of compute capability major.minor does natively, and why."""
    if major >= 8:
        return "bf16", f"compute capability {major}.{minor}: bf16 tensor cores"
    if major == 7:
        return "fp16", f"compute capability {major}.{minor}: fp16 tensor cores only (with a loss scaler)"
    return "fp32", f"compute capability {major}.{minor}: no tensor cores"


def cpu_capability() -> str:
    return torch.backends.cpu.get_cpu_capability()


def cpu_native_bf16() -> tuple[bool, str]:
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return cpu_bf16_rule(cpu_capability(), amx, avx512_bf16, os.environ.get("ONEDNN_MAX_CPU_ISA", ""))


def auto_precision(device: torch.device | str) -> Precision:
    """What `precision = "auto"` means on `device`."""
    device = torch.device(device)
    if device.type == "cpu":
        native, why = cpu_native_bf16()
        return Precision("bf16" if native else "fp32", why)
    if device.type == "cuda":
        name, why = cuda_precision_rule(*torch.cuda.get_device_capability(device))
        return Precision(name, f"{torch.cuda.get_device_name(device)}, {why}")
    return Precision("fp32", f"{device.type}: fp32 (no native-precision rule for this device)")


def resolve_precision(requested: str, device: torch.device | str) -> Precision:
    """The precision a run uses: `auto` by the policy above, anything else as asked."""
    if requested not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}.")
    if requested == "auto":
        return auto_precision(device)
    return Precision(requested, "asked for")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")),
                        platform.processor())
    except OSError:
        return platform.processor() or platform.machine()


def describe_machine(device: torch.device | str = "auto") -> dict:
    """The facts a figure needs to be judged by: CPU and its capability, threads, the GPU, and what `auto` picks."""
    device = resolve_device(str(device))
    native, why = cpu_native_bf16()
    chosen = auto_precision(device)
    facts = {"device": str(device), "cpu_model": cpu_model(), "cpu_capability": cpu_capability(),
             "cpu_native_bf16": native, "cpu_bf16_reason": why, "threads": torch.get_num_threads(),
             "cores": os.cpu_count(), "torch": torch.__version__, "precision": chosen.name,
             "precision_reason": chosen.reason}
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        facts.update(gpu=torch.cuda.get_device_name(device), gpu_capability=f"{major}.{minor}")
    return facts


def machine_class(facts: dict | None = None) -> str:
    """One short name for the class a timing holds on: the GPU, else the CPU's capability and bf16 units."""
    facts = facts or describe_machine("cpu")
    if facts.get("gpu"):
        return facts["gpu"]
    return f"{facts['cpu_capability']}{' + bf16 units' if facts['cpu_native_bf16'] else ''} CPU"
