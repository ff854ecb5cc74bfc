"""The released PairRM layouts against the golden outputs of llm-blender 0.0.2 (../shared/fixtures/pairrm_tiny).

`golden.json` holds, for 51 pairs of real alpaca_blend answers (three of them long enough to be cut, one with
literal "[SEP]"/"[CLS]" in its texts), the ids the original fed its backbone and the logits it computed, on
both layouts; and the `rank` scores and comparison matrices of 8 records with 11 candidates each.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from blender.api import Blender
from blender.rankers import PairRanker, encode_records, full_matrices, load_ranker, score_pairs
from blender.rankers.pairrm import CheckpointLoadError, load_pairrm
from blender.rankers.predict import InferenceSettings
from tests.conftest import SHARED

FIXTURE = SHARED / "fixtures" / "pairrm_tiny"
LAYOUTS = ("pairrm", "pairrm_hf")
# DeBERTa's disentangled attention costs O(length²) per row, so on CPU padding costs more than batching
# saves: one pair per pass is fastest here (110 passes of ~1000 ids: 12 s alone, 26 s in batches of 16k ids).
ONE_BY_ONE = InferenceSettings(max_batch_size=1, show_progress=False, precision="fp32")
BATCHED = InferenceSettings(show_progress=False, precision="fp32")

pytestmark = pytest.mark.skipif(not FIXTURE.is_dir(), reason="needs ../shared/fixtures/pairrm_tiny")


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads((FIXTURE / "golden.json").read_text())


@pytest.fixture(scope="module", autouse=True)
def one_thread_here():
    """Many small ops: on a shared 2-core machine two threads wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def rankers() -> dict[str, PairRanker]:
    # Through the public entry point, as a user loads them (a folder here; a hub id goes through huggingface_hub).
    return {layout: Blender.from_pretrained(FIXTURE / layout, device="cpu").ranker for layout in LAYOUTS}


def pair_texts(golden: dict) -> tuple[list[str], list[str], list[str]]:
    pairs = golden["pairs"]
    return [p["source"] for p in pairs], [p["candidate_a"] for p in pairs], [p["candidate_b"] for p in pairs]


def golden_ab(golden: dict, layout: str) -> list[dict]:
    return (
        golden["pairrm_hf"]["results"] if layout == "pairrm_hf" else golden["pairrm"]["compare_ab"]["results"]
    )


@pytest.fixture(scope="module")
def ab_logits(golden, rankers) -> dict[str, np.ndarray]:
    """Every pair's [A,B] logit on each layout, one pair per forward pass (the original at batch size one)."""
    out = {}
    for layout, ranker in rankers.items():
        sources, a, b = pair_texts(golden)
        encoded = [
            ranker.encoder.encode_record_texts(s, [x, y]) for s, x, y in zip(sources, a, b, strict=True)
        ]
        out[layout] = score_pairs(ranker, encoded, [(k, 0, 1) for k in range(len(encoded))], ONE_BY_ONE)
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_load_as_the_original_builds_them(rankers, golden, layout):
    ranker = rankers[layout]
    assert isinstance(ranker, PairRanker) and ranker.input_format == layout
    ids = golden["meta"]["token_ids"]
    tokenizer = ranker.tokenizer
    assert tokenizer.convert_tokens_to_ids(
        ["<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>"]
    ) == [ids["<|source|>"], ids["<|candidate1|>"], ids["<|candidate2|>"], ids["<|candidate|>"]]
    # The backbone's vocab_size is 1100; the original resizes the embeddings to len(tokenizer) = 1005.
    assert ranker.backbone.get_input_embeddings().weight.shape[0] == len(tokenizer) == 1005
    # PairRM's head keeps the last Linear's bias (head_layer.4.bias), and every weight equals the file's.
    state = load_file(str(FIXTURE / layout / "model.safetensors"))
    assert ranker.head[4].bias is not None
    torch.testing.assert_close(ranker.head[4].bias, state["head_layer.4.bias"], rtol=0, atol=0)
    torch.testing.assert_close(
        ranker.backbone.embeddings.word_embeddings.weight,
        state["pretrained_model.embeddings.word_embeddings.weight"],
        rtol=0,
        atol=0,
    )
    assert ranker.encoder.source_max_length == 1224 and ranker.encoder.candidate_max_length == 412


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_golden_pair_gets_the_original_input_ids(rankers, golden, layout):
    ranker = rankers[layout]
    sources, a, b = pair_texts(golden)
    results = golden_ab(golden, layout)
    for k, (s, x, y) in enumerate(zip(sources, a, b, strict=True)):
        encoded = ranker.encoder.encode_record_texts(s, [x, y])
        assert ranker.encoder.pair_ids(encoded, 0, 1) == results[k]["input_ids"], f"pair {k}"
        if layout == "pairrm":
            default = golden["pairrm"]["compare_default"]["results"][k]
            assert ranker.encoder.pair_ids(encoded, 1, 0) == default["input_ids_ba"], f"pair {k} [B,A]"


def test_truncation_shares_the_unused_source_budget(rankers, golden):
    # Pair 49: an 89-token source leaves each candidate (2048 − S) // 2 ids; candidate a (1717 tokens) is cut
    # there, and what candidate b (235 tokens) leaves unused does not pass to a.
    encoder = rankers["pairrm_hf"].encoder
    pair = golden["pairs"][49]
    encoded = encoder.encode_record_texts(pair["source"], [pair["candidate_a"], pair["candidate_b"]])
    assert len(encoded.candidates[0]) == (2048 - len(encoded.source)) // 2 == 978
    assert (
        len(encoded.candidates[1]) == pair["n_tokens_no_special"]["candidate_b"] + 3
    )  # [CLS] prefix ... [SEP]
    # Pair 48: the source is cut to 1224 ids, so each candidate gets 412.
    pair = golden["pairs"][48]
    encoded = encoder.encode_record_texts(pair["source"], [pair["candidate_a"], pair["candidate_b"]])
    assert len(encoded.source) == 1224 and [len(c) for c in encoded.candidates] == [412, 412]


def test_literal_sep_is_replaced_on_the_pairrm_path_only(rankers, golden):
    pair = golden["pairs"][50]
    encoded = {
        layout: rankers[layout].encoder.encode_record_texts(pair["source"], [pair["candidate_a"]])
        for layout in LAYOUTS
    }
    cls, sep = 1, 2
    # The source and candidate a each contain "[SEP]" and "[CLS]" once.
    assert encoded["pairrm"].source.count(sep) == 1 and encoded["pairrm"].source.count(cls) == 2
    assert encoded["pairrm_hf"].source.count(sep) == 2 and encoded["pairrm_hf"].source.count(cls) == 2
    assert (
        encoded["pairrm"].candidates[0].count(sep) == 1 and encoded["pairrm_hf"].candidates[0].count(sep) == 2
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_golden_logit_within_1e5(ab_logits, golden, layout):
    expected = np.array([r["logit"] for r in golden_ab(golden, layout)])
    np.testing.assert_allclose(ab_logits[layout], expected, rtol=0, atol=1e-5)
    # Pairs 0-49 have no "[SEP]" text: both layouts give the same ids, so the same logits.
    if layout == "pairrm_hf":
        np.testing.assert_allclose(ab_logits["pairrm"][:50], ab_logits["pairrm_hf"][:50], rtol=0, atol=1e-6)


def test_the_hf_layouts_batched_long_pairs(golden, ab_logits):
    # PairRM-hf's tokenize_pair builds each pair alone, so batching pairs 48 and 49 moves no id, only float
    # noise (about 1e-7): the batch-one logits here equal the original's batched ones too.
    batched = golden["pairrm_hf"]["batched_long"]
    assert batched["pairs"] == [48, 49]
    np.testing.assert_allclose(ab_logits["pairrm_hf"][48:50], batched["logits"], rtol=0, atol=1e-5)


def test_logits_do_not_depend_on_the_batch(rankers, golden, ab_logits):
    # The original's loadranker gives pair 49 742 ids next to pair 48 (its budget follows the batch's longest
    # source) and 1308 alone; here a pair's ids are its own, so batching moves no logit beyond float noise.
    ranker = rankers["pairrm"]
    sources, a, b = pair_texts(golden)
    encoded = [ranker.encoder.encode_record_texts(s, [x, y]) for s, x, y in zip(sources, a, b, strict=True)]
    batched = score_pairs(ranker, encoded, [(k, 0, 1) for k in range(len(encoded))], BATCHED)
    np.testing.assert_allclose(batched, ab_logits["pairrm"], rtol=0, atol=1e-5)
    original_batched = golden["pairrm"]["compare_ab_long_batched"]
    assert [len(ids) for ids in original_batched["input_ids"]] == [2048, 742]
    assert len(ranker.encoder.pair_ids(encoded[49], 0, 1)) == 1308


def test_compare_reproduces_the_golden_values(rankers, golden, ab_logits):
    blender = Blender(rankers["pairrm"], ONE_BY_ONE)
    sources, a, b = pair_texts(golden)
    results = golden["pairrm"]["compare_default"]["results"]
    values = blender.compare(sources, a, b, return_logits=True)  # mode "[A,B]+[B,A]"
    np.testing.assert_allclose(values, [r["value"] for r in results], rtol=0, atol=1e-5)
    np.testing.assert_allclose(values, [r["logit_ab"] - r["logit_ba"] for r in results], rtol=0, atol=1e-5)
    assert (blender.compare(sources, a, b) == (np.array([r["value"] for r in results]) > 0)).all()
    # "[A,B]" is the one-pass logit (the golden compare_ab); "[B,A]" is −M[b,a], oriented like the others.
    np.testing.assert_allclose(
        blender.compare(sources[:8], a[:8], b[:8], return_logits=True, mode="[A,B]"),
        ab_logits["pairrm"][:8],
        rtol=0,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        blender.compare(sources[:8], a[:8], b[:8], return_logits=True, mode="[B,A]"),
        [-r["logit_ba"] for r in results[:8]],
        rtol=0,
        atol=1e-5,
    )


@pytest.mark.slow
def test_rank_scores_reproduce_the_golden_scores(rankers, golden):
    records = golden["records"]
    blender = Blender(rankers["pairrm"], ONE_BY_ONE)
    scores = blender.rank(
        [r["source"] for r in records], [r["candidates"] for r in records], return_scores=True
    )
    expected = np.array(golden["pairrm"]["rank"]["scores"])
    np.testing.assert_allclose(np.array(scores), expected, rtol=0, atol=1e-5)
    # Ranks follow the scores (1 = best), as llm-blender's get_ranks_from_scores.
    ranks = blender.rank([r["source"] for r in records[:1]], [r["candidates"] for r in records[:1]])
    assert ranks[0] == [int(1 + (expected[0] > s).sum()) for s in expected[0]]


def test_full_matrix_equals_the_golden_comparison_matrix(rankers, golden):
    # One record's 11 × 11 matrix (110 passes): M[i, j] for every ordered pair, 0 on the diagonal.
    (matrix,) = full_matrices(rankers["pairrm"], [_record(golden["records"][3])], ONE_BY_ONE)
    expected = np.array(golden["pairrm"]["rank"]["batches"][0]["cmp_matrix"][3])
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-5)


def test_rank_batch_ids_equal_the_collators(rankers, golden):
    batch = golden["pairrm"]["rank"]["batches"][0]
    encoded = encode_records(rankers["pairrm"], [_record(r) for r in golden["records"]])
    for k, e in enumerate(encoded):
        assert e.source == batch["source_ids"][k]
        # The placeholder <|candidate|> stays until a pair is built, as in the collator's output.
        assert e.candidates == batch["candidate_ids"][k]


def _record(rec: dict):
    from blender.records import Candidate, Record

    return Record(
        id=rec["id"],
        instruction=rec["source"],
        input="",
        output="",
        candidates=[
            Candidate(model=m, text=t) for m, t in zip(rec["models"], rec["candidates"], strict=True)
        ],
    )


def test_fast_tokenizer_maps_unknown_characters_to_unk(rankers, golden):
    # The converted fast tokenizer has no byte fallback: where the slow one emits byte pieces, it emits [UNK].
    check = golden["tokenizer_check"]
    assert check["different_with_bytes_in_slow_and_unk_in_fast"] == 5
    tokenizer = rankers["pairrm"].tokenizer
    texts = [r["source"] for r in golden["records"]] + [c for r in golden["records"] for c in r["candidates"]]
    ids = [tokenizer.encode(t) for t in texts]
    for example in check["first_differences"]:
        assert any(_contains(row, example["fast"]) for row in ids), example
        assert not any(_contains(row, example["slow"]) for row in ids), example


def _contains(row: list[int], part: list[int]) -> bool:
    return any(row[i : i + len(part)] == part for i in range(len(row) - len(part) + 1))


def test_pairrm_round_trips_through_save_pretrained(rankers, golden, ab_logits, tmp_path):
    rankers["pairrm"].save_pretrained(tmp_path / "native")
    loaded = AutoModel.from_pretrained(tmp_path / "native").eval()
    assert (
        isinstance(loaded, PairRanker) and loaded.input_format == "pairrm" and loaded.head[4].bias is not None
    )
    sources, a, b = pair_texts(golden)
    encoded = [
        loaded.encoder.encode_record_texts(s, [x, y])
        for s, x, y in zip(sources[48:], a[48:], b[48:], strict=True)
    ]
    logits = score_pairs(loaded, encoded, [(k, 0, 1) for k in range(3)], ONE_BY_ONE)
    np.testing.assert_allclose(logits, ab_logits["pairrm"][48:], rtol=0, atol=0)


def test_pytorch_model_bin_loads_and_missing_keys_keep_the_backbone(tmp_path, golden, ab_logits):
    # pytorch_model.bin is read weights-only, and (strict=False, as the original) a key it lacks keeps the
    # pretrained backbone's value: here the backbone's final LayerNorm, the same tensor as in the ranker.
    folder = tmp_path / "pairrm"
    folder.mkdir()
    shutil.copy(FIXTURE / "pairrm" / "config.json", folder)
    state = load_file(str(FIXTURE / "pairrm" / "model.safetensors"))
    dropped = "pretrained_model.encoder.LayerNorm.weight"
    torch.save({k: v for k, v in state.items() if k != dropped}, folder / "pytorch_model.bin")
    ranker = load_pairrm(folder, backbone=str(FIXTURE / "backbone"))
    torch.testing.assert_close(ranker.backbone.encoder.LayerNorm.weight, state[dropped], rtol=0, atol=0)
    pair = golden["pairs"][0]
    encoded = [ranker.encoder.encode_record_texts(pair["source"], [pair["candidate_a"], pair["candidate_b"]])]
    np.testing.assert_allclose(
        score_pairs(ranker, encoded, [(0, 0, 1)], ONE_BY_ONE), ab_logits["pairrm"][:1], atol=1e-6
    )


def test_model_name_resolves_against_the_working_directory_then_the_checkpoint(tmp_path, monkeypatch):
    # config.json names the backbone "backbone": the original resolves it against the working directory.
    monkeypatch.chdir(FIXTURE)
    assert load_ranker("pairrm").input_format == "pairrm"
    monkeypatch.chdir(tmp_path)
    assert load_ranker(FIXTURE / "pairrm").input_format == "pairrm"  # beside the checkpoint folder
    folder = tmp_path / "elsewhere" / "pairrm"
    shutil.copytree(FIXTURE / "pairrm", folder)
    with pytest.raises(CheckpointLoadError, match="hf download"):
        load_ranker(folder)  # "backbone" is nowhere: taken as a hub id, which is unreachable offline
    assert load_ranker(folder, backbone=str(FIXTURE / "backbone")).input_format == "pairrm"


def test_hub_ids_go_through_huggingface_hub(monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointLoadError, match=r"llm-blender/PairRM.*hf download llm-blender/PairRM"):
        Blender.from_pretrained("llm-blender/PairRM", device="cpu")
