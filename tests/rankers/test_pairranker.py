import numpy as np
import pytest
import torch

from blender.aggregation import pair_orders
from blender.rankers import PairRanker, encode_records, full_matrices, score_pairs
from blender.rankers.predict import InferenceSettings, length_sorted_batches, orientation_seed
from blender.records import parse_record
from tests.conftest import TINY_BUDGETS, make_raw_record, make_tiny_encoder, make_tiny_tokenizer


def test_adds_markers_and_resizes_embeddings():
    tokenizer = make_tiny_tokenizer()
    n = len(tokenizer)
    ranker = PairRanker(make_tiny_encoder(n), tokenizer, task_names=["a", "b"], **TINY_BUDGETS)
    assert len(tokenizer) == n + 3
    assert ranker.backbone.get_input_embeddings().weight.shape[0] == n + 3
    assert ranker.head[-1].out_features == 2


def test_scores_come_from_the_marker_positions(tiny_ranker):
    encoded = tiny_ranker.encoder.encode_record_texts("the answer", ["good", "bad a"])
    batch = tiny_ranker.encoder.pad([tiny_ranker.encoder.pair_ids(encoded, 0, 1)])
    s1, s2 = tiny_ranker(batch["input_ids"], batch["attention_mask"])
    assert s1.shape == s2.shape == (1, 1)
    hidden = tiny_ranker.backbone(**batch).last_hidden_state[0]
    ids = batch["input_ids"][0].tolist()
    at = {
        t: hidden[ids.index(i)]
        for t, i in [
            ("s", tiny_ranker.encoder.source_id),
            ("c1", tiny_ranker.encoder.candidate1_id),
            ("c2", tiny_ranker.encoder.candidate2_id),
        ]
    }
    torch.testing.assert_close(s1[0], tiny_ranker.head(torch.cat([at["s"], at["c1"]])))
    torch.testing.assert_close(s2[0], tiny_ranker.head(torch.cat([at["s"], at["c2"]])))
    logit = tiny_ranker.pair_logits(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(logit, (s1 - s2).mean(-1))


def test_pair_logit_is_mean_over_tasks():
    tokenizer = make_tiny_tokenizer()
    ranker = PairRanker(
        make_tiny_encoder(len(tokenizer)), tokenizer, task_names=["a", "b", "c"], **TINY_BUDGETS
    ).eval()
    encoded = ranker.encoder.encode_record_texts("the", ["good", "bad"])
    batch = ranker.encoder.pad([ranker.encoder.pair_ids(encoded, 0, 1)])
    s1, s2 = ranker(**batch)
    assert s1.shape == (1, 3)
    torch.testing.assert_close(ranker.pair_logits(**batch), (s1 - s2).mean(-1))


def test_scores_do_not_depend_on_batching_or_order(tiny_ranker):
    records = [parse_record(make_raw_record(i, n_candidates=5), "t") for i in range(6)]
    encoded = encode_records(tiny_ranker, records)
    triples = [(e, i, j) for e in range(6) for i in range(5) for j in range(5) if i != j]
    reference = score_pairs(
        tiny_ranker,
        encoded,
        triples,
        InferenceSettings(precision="fp32", max_batch_size=1, show_progress=False),
    )
    for settings in (
        InferenceSettings(precision="fp32", max_batch_size=8, show_progress=False),
        InferenceSettings(precision="fp32", max_batch_size=32, show_progress=False),
        InferenceSettings(precision="fp32", max_tokens=64, show_progress=False),
    ):
        np.testing.assert_allclose(score_pairs(tiny_ranker, encoded, triples, settings), reference, atol=1e-5)
    shuffled = np.random.default_rng(0).permutation(len(triples))
    again = score_pairs(
        tiny_ranker,
        encoded,
        [triples[k] for k in shuffled],
        InferenceSettings(precision="fp32", show_progress=False),
    )
    np.testing.assert_allclose(again, reference[shuffled], atol=1e-5)
    # A record's matrix is the same whether it is ranked alone or with others.
    alone = full_matrices(
        tiny_ranker, records[2:3], InferenceSettings(precision="fp32", show_progress=False)
    )[0]
    together = full_matrices(tiny_ranker, records, InferenceSettings(precision="fp32", show_progress=False))[
        2
    ]
    np.testing.assert_allclose(alone, together, atol=1e-5)
    assert np.all(np.diag(together) == 0)


def test_one_order_runs_half_the_passes_and_keeps_their_logits(tiny_ranker, monkeypatch):
    import blender.rankers.predict as predict

    records = [parse_record(make_raw_record(k), "t") for k in range(2)]
    settings = InferenceSettings(precision="fp32", show_progress=False)
    both = full_matrices(tiny_ranker, records, settings)
    counted = []
    score = predict.score_pairs
    monkeypatch.setattr(
        predict,
        "score_pairs",
        lambda r, e, triples, *a, **k: counted.append(len(triples)) or score(r, e, triples, *a, **k),
    )
    one = full_matrices(tiny_ranker, records, settings, orders="one")
    n = len(records[0].candidates)
    assert counted == [len(records) * n * (n - 1) // 2]
    for record, full, half in zip(records, both, one, strict=True):
        for i, j in pair_orders(n, "one", orientation_seed(record.id)):
            assert half[i, j] == pytest.approx(full[i, j], abs=1e-5) and half[j, i] == -half[i, j]


def test_length_sorted_batches_respect_the_token_budget():
    lengths = [5, 50, 7, 49, 20, 3]
    batches = length_sorted_batches(lengths, max_tokens=100, max_batch_size=3)
    assert sorted(k for b in batches for k in b) == list(range(6))
    for batch in batches:
        assert len(batch) <= 3 and len(batch) * max(lengths[k] for k in batch) <= 100
    assert batches[0] == [1, 3]  # longest first


def test_save_and_load_round_trip(tiny_ranker, tmp_path):
    tiny_ranker.save(tmp_path / "ckpt")
    loaded = PairRanker.load(tmp_path / "ckpt")
    assert loaded.settings() == tiny_ranker.settings()
    records = [parse_record(make_raw_record(0), "t")]
    settings = InferenceSettings(precision="fp32", show_progress=False)
    np.testing.assert_allclose(
        full_matrices(loaded, records, settings)[0],
        full_matrices(tiny_ranker, records, settings)[0],
        atol=1e-6,
    )


def test_load_rejects_a_folder_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a ranker checkpoint"):
        PairRanker.load(tmp_path)


def test_length_hint_is_saved_with_the_checkpoint(tmp_path):
    tokenizer = make_tiny_tokenizer()
    ranker = PairRanker(
        make_tiny_encoder(len(tokenizer)), tokenizer, task_names=["q"], length_hint=True, **TINY_BUDGETS
    )
    ranker.save(tmp_path / "ckpt")
    assert PairRanker.load(tmp_path / "ckpt").encoder.length_hint is True


def test_budgets_longer_than_the_backbones_positions_fail_at_construction():
    tokenizer = (
        make_tiny_tokenizer()
    )  # the tiny encoder has 384 positions: 128 + 2 × 128 fits, 64 + 2 × 256 not
    with pytest.raises(
        ValueError, match=r"64 \+ 2 × 256 = 576 tokens, but the backbone \(bert\) has 384 positions"
    ):
        PairRanker(
            make_tiny_encoder(len(tokenizer)), tokenizer, source_max_length=64, candidate_max_length=256
        )


def test_mean_pooling_averages_each_part_and_ignores_padding(tmp_path):
    tokenizer = make_tiny_tokenizer()
    ranker = PairRanker(
        make_tiny_encoder(len(tokenizer)), tokenizer, task_names=["q"], pooling="mean", **TINY_BUDGETS
    ).eval()
    encoded = ranker.encoder.encode_record_texts("the answer", ["good", "bad a"])
    ids = ranker.encoder.pair_ids(encoded, 0, 1)
    batch = ranker.encoder.pad([ids, ids + ids[:3]])  # row 0 gets 3 padding tokens
    s1, s2 = ranker(batch["input_ids"][:1], batch["attention_mask"][:1])
    hidden = ranker.backbone(input_ids=torch.tensor([ids])).last_hidden_state[0]
    starts = [
        ids.index(m)
        for m in (ranker.encoder.source_id, ranker.encoder.candidate1_id, ranker.encoder.candidate2_id)
    ] + [len(ids)]
    source, first, second = (hidden[a:b].mean(0) for a, b in zip(starts[:-1], starts[1:], strict=True))
    torch.testing.assert_close(s1[0], ranker.head(torch.cat([source, first])))
    torch.testing.assert_close(s2[0], ranker.head(torch.cat([source, second])))
    padded_s1, _ = ranker(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(padded_s1[0], s1[0])
    ranker.save(tmp_path / "ckpt")
    assert PairRanker.load(tmp_path / "ckpt").pooling == "mean"


def test_an_unknown_pooling_is_refused():
    tokenizer = make_tiny_tokenizer()
    with pytest.raises(ValueError, match=r"ranker.pooling='cls' is not one of \('marker', 'mean'\)"):
        PairRanker(
            make_tiny_encoder(len(tokenizer)), tokenizer, task_names=["q"], pooling="cls", **TINY_BUDGETS
        )
