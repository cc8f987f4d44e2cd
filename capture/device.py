"""What the compute device can do: native bf16 on this CPU, and the compute dtype `--dtype auto` picks from it.

A CPU without bf16 instructions (no avx512_bf16, no AMX, no Arm BF16) runs torch's bf16 matmuls through a slow
emulation: on an AMD EPYC with AVX2 only, torch 2.13 ran a 1024x896 @ 896x4864 matmul at 1.1 GFLOP/s in bf16
against 97.6 GFLOP/s in fp32 (issue 21). There `--dtype auto` computes in fp32 instead of the checkpoint's bf16.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import torch

# x86: AVX-512 BF16 or AMX; aarch64: the BF16 extension (as Linux names them in /proc/cpuinfo).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
SLOWDOWN = "bf16 matmuls ran about 90x slower than fp32 on such a CPU (1.1 vs 97.6 GFLOP/s, AMD EPYC with AVX2)"


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and the bf16 instruction flags it reports (None: flags unknown on this platform)."""

    model: str
    bf16_flags: tuple[str, ...] | None

    @property
    def native_bf16(self) -> bool | None:
        """Whether bf16 matmuls run natively; None when the platform does not say."""
        return None if self.bf16_flags is None else bool(self.bf16_flags)

    def describe(self) -> str:
        """One phrase for benchmark headers: model and bf16 flags."""
        if self.bf16_flags is None:
            return f"{self.model} (bf16 flags unknown)"
        return f"{self.model} (bf16: {', '.join(self.bf16_flags) if self.bf16_flags else 'none, emulated'})"


def parse_cpuinfo(text: str) -> CpuInfo:
    """CpuInfo from the text of /proc/cpuinfo (the first processor's model name and flags)."""
    model: str | None = None
    flags: set[str] | None = None
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name" and model is None:
            model = value
        elif key in ("flags", "Features") and flags is None:  # x86 / aarch64
            flags = set(value.split())
    model = model or platform.processor() or platform.machine()
    return CpuInfo(model, None if flags is None else tuple(flag for flag in BF16_FLAGS if flag in flags))


def cpu_info() -> CpuInfo:
    """This machine's CPU (Linux: /proc/cpuinfo; elsewhere the flags are unknown)."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return CpuInfo(platform.processor() or platform.machine(), None)


def auto_compute_dtype(checkpoint: torch.dtype, device: torch.device,
                       cpu: CpuInfo | None = None) -> tuple[torch.dtype, str | None]:
    """The dtype `--dtype auto` computes in, and why it differs from the checkpoint's (None when it does not):
    fp32 for a bf16 checkpoint on a CPU known to lack native bf16; the checkpoint's dtype otherwise."""
    if checkpoint != torch.bfloat16 or device.type != "cpu":
        return checkpoint, None
    cpu = cpu or cpu_info()
    if cpu.native_bf16 is not False:
        return checkpoint, None
    return torch.float32, (f"float32 instead of the checkpoint's bfloat16: this CPU ({cpu.model}) has no native bf16 "
                           f"(none of {', '.join(BF16_FLAGS)}) and {SLOWDOWN}; pass --dtype bf16 to compute in bf16 "
                           "anyway (the stored bits differ from a bf16 run)")
