import numpy as np
import pytest
import torch
from torch import nn

from blender.aggregation import max_logits
from blender.devices import cpu_has_avx512_vnni
from blender.rankers import precision as precision_module
from blender.rankers.precision import (
    PRECISIONS,
    SAVED_INT8,
    SAVED_INT8_FULL_RANGE,
    Int8LinearFullRange,
    model_for_precision,
    quantize_int8,
    saved_precision_name,
)
from blender.rankers.predict import InferenceSettings, full_matrices
from blender.records import parse_record
from tests.conftest import make_raw_record


def quiet(precision: str) -> InferenceSettings:
    return InferenceSettings(precision=precision, show_progress=False)


@pytest.fixture
def records():
    return [parse_record(make_raw_record(i, n_candidates=5), "t") for i in range(6)]


def test_int8_scores_agree_with_fp32_within_one_percent_of_the_largest_logit(tiny_ranker, records):
    with torch.no_grad():  # a head 10x the default spreads the logits over several units
        tiny_ranker.head[-1].weight.mul_(10)
    fp32 = full_matrices(tiny_ranker, records, quiet("fp32"))
    int8 = full_matrices(tiny_ranker, records, quiet("int8"))
    largest = max(float(np.abs(m).max()) for m in fp32)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(fp32, int8, strict=True))
    assert largest > 1.0
    # The stated tolerance: 1% of the largest |logit| (measured here: 0.04% with per-channel scales, 0.13%
    # with per-matrix ones). Quantization did run: the scores are not bit-identical.
    assert 0 < worst <= 0.01 * largest
    assert [int(np.argmax(max_logits(m))) for m in int8] == [int(np.argmax(max_logits(m))) for m in fp32]


def test_int8_copy_quantizes_the_encoder_only_and_is_made_once_per_weights(tiny_ranker):
    quantized = model_for_precision(tiny_ranker, "int8")
    assert quantized is not tiny_ranker
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    backbone_linears = [m for m in quantized.backbone.modules() if isinstance(m, nn.Linear | dynamic)]
    # 2 layers × (q k v o up down), each a dynamic int8 layer (torch's, or its full-range subclass on VNNI)
    assert len(backbone_linears) == 2 * 6 and all(isinstance(m, dynamic) for m in backbone_linears)
    assert [type(m) for m in quantized.head if isinstance(m, nn.Linear | dynamic)] == [nn.Linear, nn.Linear]
    assert not any(isinstance(m, dynamic) for m in tiny_ranker.modules())  # the ranker itself is untouched
    assert model_for_precision(tiny_ranker, "int8") is quantized
    with torch.no_grad():
        tiny_ranker.head[-1].weight.add_(1.0)  # new weights: a new copy, so int8 never runs stale weights
    assert model_for_precision(tiny_ranker, "int8") is not quantized
    assert model_for_precision(tiny_ranker, "bf16") is tiny_ranker


def test_int8_weights_have_one_scale_per_output_channel_and_are_saved_under_that_name(tiny_ranker):
    quantized = model_for_precision(tiny_ranker, "int8")
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    layer = next(m for m in quantized.backbone.modules() if isinstance(m, dynamic))
    weight = layer.weight()
    assert weight.qscheme() == torch.per_channel_affine
    assert weight.q_per_channel_scales().shape == (layer.out_features,)
    assert [saved_precision_name(p) for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]


@pytest.mark.parametrize("vnni", [True, False])
def test_int8_activations_take_8_bits_only_where_the_cpu_has_vnni(tiny_ranker, monkeypatch, vnni):
    monkeypatch.setattr(precision_module, "cpu_has_avx512_vnni", lambda: vnni)
    quantized = quantize_int8(tiny_ranker)
    layers = {
        type(m) for m in quantized.backbone.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)
    }
    assert layers == ({Int8LinearFullRange} if vnni else {torch.ao.nn.quantized.dynamic.Linear})
    # Each scheme's matrices are saved under their own name, and never the earlier per-matrix "int8"'s.
    assert saved_precision_name("int8") == (SAVED_INT8_FULL_RANGE if vnni else SAVED_INT8)
    assert {SAVED_INT8, SAVED_INT8_FULL_RANGE} == {"int8-per-channel", "int8-per-channel-a8"}


def test_full_range_int8_layer_is_torchs_kernel_with_8_bit_activations(tiny_ranker):
    layer = next(
        m
        for m in quantize_int8(tiny_ranker, full_range_activations=True).backbone.modules()
        if isinstance(m, Int8LinearFullRange)
    )
    x = torch.randn(4, 7, layer.in_features, generator=torch.Generator().manual_seed(0))
    packed = layer._packed_params._packed_params
    full = torch.ops.quantized.linear_dynamic(x, packed, reduce_range=False)
    seven_bit = torch.ops.quantized.linear_dynamic(x, packed, reduce_range=True)
    assert torch.equal(layer(x), full)
    assert not torch.equal(full, seven_bit)  # the flag reaches the kernel
    if not cpu_has_avx512_vnni():
        return  # without VNNI full-range products may saturate: the layer is not used there
    reference = x @ layer.weight().dequantize().T + layer.bias()
    # Half the activation step, so (the weights being the same) closer to the float product.
    assert (full - reference).abs().mean() < (seven_bit - reference).abs().mean()


def test_precision_is_checked_where_it_is_set():
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16", "int8")
    with pytest.raises(ValueError, match="inference.precision='no'.*fp32.*int8"):
        InferenceSettings(precision="no")
    with pytest.raises(ValueError, match="inference.precision='onnx'"):
        InferenceSettings(precision="onnx")


def test_pointwise_rankers_refuse_int8_rather_than_run_fp32(records):
    from blender.rankers.predict import autocast_context

    with pytest.raises(ValueError, match="int8 is implemented for PairRanker"):
        autocast_context(torch.device("cpu"), "int8")


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_where_the_device_has_it_natively(monkeypatch, native):
    import blender.devices as devices
    from blender.rankers.precision import autocast_for

    monkeypatch.setattr(devices, "native_bf16", lambda device: native)
    cpu = torch.device("cpu")
    assert devices.resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert devices.resolve_precision("auto", cpu, fp32_name="no") == ("bf16" if native else "no")
    assert devices.resolve_precision("fp16", cpu) == "fp16"  # an explicit choice is kept
    with autocast_for(cpu, "auto"):
        assert torch.is_autocast_enabled("cpu") is native
        if native:
            assert torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    from blender.devices import native_bf16

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert native_bf16(torch.device("cpu")) is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert native_bf16(torch.device("cpu")) is True
