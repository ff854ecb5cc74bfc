"""Numerical precision of a ranker's inference: fp32, bf16 / fp16 autocast, or dynamic int8.

`inference.precision` picks one; "auto" is bf16 where the device computes it natively and fp32 elsewhere
(`blender.devices.native_bf16`: emulated bf16 is slower than fp32 on a CPU without AVX512-BF16 or AMX). bf16 and fp16 run the same weights under `torch.autocast`; int8 runs a copy
of the ranker whose encoder Linear layers are dynamically quantized (`torch.ao.quantization.quantize_dynamic`:
int8 weights, activations quantized per batch on the fly; on x86 the fbgemm kernels use VNNI where the CPU
has it). Its activations are quantized to all 8 bits where the CPU has AVX512-VNNI and to 7 bits elsewhere
(torch's own choice everywhere; see `Int8LinearFullRange`). The copy is made once per ranker and weights: a
ranker trained further gets a fresh copy.

ONNX Runtime through `optimum` is not offered: every `optimum-onnx` release (the home of optimum's ONNX
Runtime support since optimum 2.0) requires transformers < 4.58, and this project runs transformers 5.
"""

from __future__ import annotations

import contextlib
import weakref

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

from blender.devices import cpu_has_avx512_vnni, resolve_precision

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# ranker -> (its weights' version when copied, the int8 copy)
_QUANTIZED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], nn.Module]] = (
    weakref.WeakKeyDictionary()
)


# What saved matrices record for int8: the quantization scheme, so that matrices of another scheme (the
# per-matrix int8 of earlier versions, saved as "int8"; 7-bit activations) are computed again, not reused.
SAVED_INT8 = "int8-per-channel"
SAVED_INT8_FULL_RANGE = "int8-per-channel-a8"


def int8_full_range_activations() -> bool:
    """Whether int8 here quantizes activations to all 8 bits (AVX512-VNNI) rather than torch's 7."""
    return cpu_has_avx512_vnni()


def saved_precision_name(precision: str) -> str:
    """The name a resolved precision is saved under beside its matrices (and looked up by)."""
    if precision != "int8":
        return precision
    return SAVED_INT8_FULL_RANGE if int8_full_range_activations() else SAVED_INT8


def check_precision(precision: str) -> str:
    """`precision` if it is one of `PRECISIONS`, else a ValueError naming the key and the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"inference.precision={precision!r}; choose one of {list(PRECISIONS)}")
    return precision


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast region a precision runs under on `device` (none for fp32 and int8)."""
    dtype = AUTOCAST_DTYPES.get(resolve_precision(check_precision(precision), device))
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _weights_version(model: nn.Module) -> tuple[int, ...]:
    # Every in-place update of a parameter (an optimizer step, load_state_dict) bumps its version counter.
    return tuple(p._version for p in model.parameters())


class Int8LinearFullRange(DynamicInt8Linear):
    """torch's dynamic int8 Linear with activations quantized to all 8 bits.

    torch's own layer always passes `reduce_range=True` (activations in 0..127): on AVX2, fbgemm multiplies
    u8 activations by s8 weights with vpmaddubsw, which sums pairs of products in int16 and would saturate
    at full range. AVX512-VNNI's vpdpbusd sums in int32, so the eighth bit costs nothing there and halves the
    activations' rounding step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._packed_params.dtype != torch.qint8:
            return super().forward(x)
        packed = self._packed_params._packed_params
        return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=False).to(x.dtype)

    def _get_name(self) -> str:
        return "DynamicQuantizedLinearFullRange"


def quantize_int8(model: nn.Module, full_range_activations: bool | None = None) -> nn.Module:
    """A copy of `model` (a ranker with a `.backbone`) whose backbone Linear layers are dynamic int8; the
    head stays fp32 (it is small, and its output is the logit itself). Activations take all 8 bits where
    `full_range_activations` (default: where the CPU has AVX512-VNNI), else torch's 7."""
    if next(model.parameters()).device.type != "cpu":
        raise ValueError(
            "inference.precision=int8 runs on the CPU (dynamic quantization has no CUDA kernels)"
        )
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if full_range_activations is None:
        full_range_activations = int8_full_range_activations()
    layer = Int8LinearFullRange if full_range_activations else DynamicInt8Linear

    # Only Linear layers: the embeddings would need weight-only qparams, and gain nothing (a lookup). One scale
    # per output channel, not per matrix: on the demo ranker's val matrix per-matrix scales changed fp32's
    # MaxLogits pick in 8 of 100 instructions, per-channel ones in 3, per-channel with 8-bit activations (VNNI) in 1
    # (docs/results/bench_ranker_speed.md; speeds are compared in `make bench`'s one run only).
    quantized = quantize_dynamic(
        model,
        {"backbone": per_channel_dynamic_qconfig},
        mapping={nn.Linear: layer},
        inplace=False,
    )
    return quantized.eval()


def model_for_precision(model: nn.Module, precision: str) -> nn.Module:
    """The module to run at `precision`: `model` itself, or for int8 its quantized copy (made once per
    weights, then reused)."""
    if check_precision(precision) != "int8":
        return model
    version = _weights_version(model)
    cached = _QUANTIZED.get(model)
    if cached is None or cached[0] != version:
        cached = (version, quantize_int8(model))
        _QUANTIZED[model] = cached
    return cached[1]
