"""scripts/gpu_check.py, the GPU throughput check, dry-run on the CPU at toy sizes: it builds its models from
config, trains through the loop and writes its JSON (the numbers mean nothing here)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_script


@pytest.fixture(scope="module")
def gpu_check():
    return load_script("gpu_check")


def test_the_full_sizes_are_deberta_v3_large_and_flan_t5_base(gpu_check):
    ranker, fuser = gpu_check.deberta_v3_large_config(False), gpu_check.flan_t5_base_config(False)
    assert (ranker.hidden_size, ranker.num_hidden_layers, ranker.num_attention_heads, ranker.vocab_size) == (
        1024,
        24,
        16,
        128100,
    )
    assert (fuser.d_model, fuser.num_layers, fuser.num_decoder_layers, fuser.d_ff, fuser.vocab_size) == (
        768,
        12,
        12,
        2048,
        32128,
    )


@pytest.mark.parametrize("part", ["ranker", "fuser"])
def test_a_tiny_dry_run_trains_and_writes_its_json(gpu_check, part, tmp_path, one_thread):
    result = gpu_check.main([part, "--tiny", "--out", str(tmp_path)])
    written = json.loads((tmp_path / f"gpu_check_{part}.json").read_text())
    assert written["part"] == part and written["steps_timed"] == 2  # 4 steps, the first untimed
    rate = written["pairs_per_s" if part == "ranker" else "samples_per_s"]
    assert rate > 0 and rate == pytest.approx(result["pairs_per_s" if part == "ranker" else "samples_per_s"])
    if part == "ranker":
        # 6 x non-embedding parameters + 12 x layers x hidden x seq_len, per token.
        non_embedding = written["parameters"] - 1000 * 32
        assert written["train_flops_per_token"] == 6 * non_embedding + 12 * 2 * 32 * 16
        assert written["mfu"] is None  # no GPU: no peak to compare with


def test_a_fit_after_another_precision_in_the_same_process(gpu_check, tmp_path, one_thread):
    # accelerate keeps one state per process; a fit at fp32 before this bf16 one (as the suite runs them) must
    # not make it fail with "AcceleratorState has already been initialized".
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    Accelerator(mixed_precision="no", cpu=True)
    result = gpu_check.main(["ranker", "--tiny", "--out", str(tmp_path)])
    assert result["precision"] == "bf16" and result["steps_timed"] == 2
