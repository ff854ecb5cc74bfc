"""Numerical precision of a ranker's inference: fp32, bf16 / fp16 autocast, or dynamic int8.

`inference.precision` picks one; "auto" is bf16 where the device computes it natively and fp32 elsewhere
(`blender.devices.native_bf16`: emulated bf16 is slower than fp32 on a CPU without AVX512-BF16 or AMX). bf16 and fp16 run the same weights under `torch.autocast`; int8 runs a copy
of the ranker whose encoder Linear layers are dynamically quantized (`torch.ao.quantization.quantize_dynamic`:
int8 weights, activations quantized per batch on the fly; on x86 the fbgemm kernels use VNNI where the CPU
has it). The copy is made once per ranker and weights: a ranker trained further gets a fresh copy.

ONNX Runtime through `optimum` is not offered: every `optimum-onnx` release (the home of optimum's ONNX
Runtime support since optimum 2.0) requires transformers < 4.58, and this project runs transformers 5.
"""

from __future__ import annotations

import contextlib
import weakref

import torch
from torch import nn

from blender.devices import resolve_precision

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# ranker -> (its weights' version when copied, the int8 copy)
_QUANTIZED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], nn.Module]] = (
    weakref.WeakKeyDictionary()
)


# What saved matrices record for int8: the quantization scheme, so that matrices of another scheme (the
# per-matrix int8 of earlier versions, saved as "int8") are computed again rather than reused.
SAVED_INT8 = "int8-per-channel"


def saved_precision_name(precision: str) -> str:
    """The name a resolved precision is saved under beside its matrices (and looked up by)."""
    return SAVED_INT8 if precision == "int8" else precision


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


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` (a ranker with a `.backbone`) whose backbone Linear layers are dynamic int8; the
    head stays fp32 (it is small, and its output is the logit itself)."""
    if next(model.parameters()).device.type != "cpu":
        raise ValueError(
            "inference.precision=int8 runs on the CPU (dynamic quantization has no CUDA kernels)"
        )
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    # Only Linear layers: the embeddings would need weight-only qparams, and gain nothing (a lookup). One scale
    # per output channel, not per matrix: on the demo ranker's val matrix per-matrix scales changed fp32's
    # MaxLogits pick in 8 of 100 instructions, per-channel ones in 3 (their speeds, 3.61 and 3.48 s per instruction,
    # come from two separate runs: the one-run comparison is `make bench`'s).
    quantized = quantize_dynamic(
        model,
        {"backbone": per_channel_dynamic_qconfig},
        mapping={nn.Linear: DynamicInt8Linear},
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
