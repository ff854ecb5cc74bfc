"""Which device a component runs on, and which float precision it computes fastest in there."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """ "auto" -> the first CUDA device when there is one, else the CPU; any other name as `torch.device` reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bf16 in hardware: a CUDA GPU that supports it (Ampere on), a CPU with
    AVX512-BF16 or AMX. Elsewhere bf16 autocast is emulated and slower than fp32: on a 2-core Xeon with
    AVX-512 but no BF16 extension, MiniLM's forward pass took 2.7x fp32's time (docs/results/pairranker.md)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        cpu = torch.cpu
        checks = (
            getattr(cpu, "_is_avx512_bf16_supported", None),
            getattr(cpu, "_is_amx_tile_supported", None),
        )
        return any(bool(check()) for check in checks if check is not None)
    return False


def cpu_has_avx512_vnni() -> bool:
    """Whether this CPU has AVX512-VNNI, where fbgemm's int8 GEMM (vpdpbusd) sums u8 x s8 products in int32.
    Without it (AVX2's vpmaddubsw) pairs of products are summed in int16 and saturate on full-range 8-bit
    activations, which is why torch quantizes them to 7 bits by default. Read from /proc/cpuinfo (Linux);
    False where it cannot be read."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags


def resolve_precision(precision: str, device: torch.device, fp32_name: str = "fp32") -> str:
    """ "auto" -> "bf16" where `device` computes bf16 natively, else fp32 (named `fp32_name`: accelerate calls it
    "no"); any other value unchanged."""
    if precision != "auto":
        return precision
    chosen = "bf16" if native_bf16(device) else fp32_name
    log.debug("precision auto -> %s on %s", chosen, device)
    return chosen
