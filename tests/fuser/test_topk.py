"""The ranker's top-K: computed once, cached per record, reused from saved matrices; the random ablation."""

from __future__ import annotations

import numpy as np
import pytest

from blender.fuser import topk as topk_module
from blender.fuser.topk import (
    RankerNotFoundError,
    TopKSettings,
    random_rankings,
    ranker_rankings,
    rankings_from_scores,
)
from blender.rankers.predict import InferenceSettings
from blender.rankers.saved_scores import write_pair_logits
from blender.records.schema import parse_record
from tests.conftest import make_raw_record

QUIET = InferenceSettings(precision="fp32", show_progress=False)


def records(n: int = 3):
    return [parse_record(make_raw_record(k), where=f"test:{k}") for k in range(n)]


def test_rankings_best_first_ties_in_candidate_order():
    assert rankings_from_scores([np.array([1.0, 3.0, 3.0, 0.0])]) == [[1, 2, 0, 3]]


def test_missing_ranker_says_how_to_get_one(tmp_path):
    settings = TopKSettings(ranker_runs_dir=str(tmp_path / "none"), cache_dir=str(tmp_path))
    with pytest.raises(RankerNotFoundError, match="make train-ranker"):
        ranker_rankings(records(), "val", "d", settings)


def test_computed_once_then_cached_per_record(tiny_ranker, tmp_path, monkeypatch):
    checkpoint = tmp_path / "runs" / "r1" / "best"
    tiny_ranker.save(checkpoint)
    settings = TopKSettings(
        ranker_runs_dir=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"), chunk_records=2
    )
    first, source = ranker_rankings(records(3), "train", "d", settings, QUIET)
    assert source["source"] == "full_matrix" and source["computed"] == 3
    assert all(sorted(r) == [0, 1, 2, 3] for r in first)

    def refuse(*args, **kwargs):
        raise AssertionError("ranked again")

    monkeypatch.setattr("blender.rankers.predict.full_matrices", refuse)
    again, source = ranker_rankings(
        records(2), "train", "d", settings, QUIET
    )  # a smaller limit reuses the rows
    assert again == first[:2] and source["computed"] == 0 and len(source["scores"]) == 2


def test_saved_eval_matrices_are_reused(tiny_ranker, tmp_path):
    checkpoint = tmp_path / "run" / "best"
    tiny_ranker.save(checkpoint)
    recs = records(2)
    matrices = [np.zeros((4, 4)), np.zeros((4, 4))]
    matrices[0][2, :] = 1.0  # candidate 2 beats everyone in record 0
    write_pair_logits(
        checkpoint.parent / "eval" / "pair_logits_d_val.npz",
        [r.id for r in recs],
        [r.models for r in recs],
        matrices,
    )
    settings = TopKSettings(ranker_checkpoint=str(checkpoint), cache_dir=str(tmp_path / "cache"))
    rankings, source = ranker_rankings(recs, "val", "d", settings)
    assert source["source"].endswith("pair_logits_d_val.npz")
    assert rankings[0][0] == 2


def test_random_k_is_seeded_per_record():
    recs = records(4)
    assert random_rankings(recs, 0) == random_rankings(list(reversed(recs)), 0)[::-1]
    assert random_rankings(recs, 0) != random_rankings(recs, 1)


def test_torn_cache_line_is_ignored(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "key": "k", "ranking": [0]}\n{"id": "b", "ke')
    assert list(topk_module._read_cache(path)) == ["a"]


def test_an_unreadable_saved_matrix_file_is_recomputed_not_trusted(tiny_ranker, tmp_path):
    from blender.rankers.saved_scores import read_pair_logits

    checkpoint = tmp_path / "run" / "best"
    tiny_ranker.save(checkpoint)
    broken = checkpoint.parent / "eval" / "pair_logits_d_val.npz"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not an npz file")
    assert read_pair_logits(broken, records(2), checkpoint) is None


def test_one_order_computes_half_the_passes_and_saved_full_matrices_serve_it(
    tiny_ranker, tmp_path, monkeypatch
):
    import blender.rankers.predict as predict

    checkpoint = tmp_path / "run" / "best"
    tiny_ranker.save(checkpoint)
    recs = records(2)
    one = TopKSettings(
        ranker_checkpoint=str(checkpoint), cache_dir=str(tmp_path / "cache"), pair_orders="one"
    )
    both = TopKSettings(
        ranker_checkpoint=str(checkpoint), cache_dir=str(tmp_path / "cache"), pair_orders="both"
    )
    passes = []
    score = predict.score_pairs
    monkeypatch.setattr(
        predict,
        "score_pairs",
        lambda r, e, triples, *a, **k: passes.append(len(triples)) or score(r, e, triples, *a, **k),
    )
    _, source = ranker_rankings(recs, "train", "d", one, QUIET)
    assert passes == [2 * 6] and source["pair_orders"] == ["one"]  # 4 candidates: 6 of the 12 ordered pairs
    ranker_rankings(recs, "train", "d", one, QUIET)
    assert passes == [12]  # cached
    _, source = ranker_rankings(recs, "train", "d", both, QUIET)
    assert passes == [12, 2 * 12] and source["pair_orders"] == [
        "both"
    ]  # a one-order row does not serve "both"

    # The eval split's saved full matrix is used whole, so the fuser sees the top-K `make eval` ranks.
    matrix = np.zeros((4, 4))
    matrix[0, 3] = 5.0  # candidate 0 wins big in an order the balanced half does not run ((3, 0) is)
    matrix[1, 2] = 1.0
    write_pair_logits(
        checkpoint.parent / "eval" / "pair_logits_d_val.npz", [recs[0].id], [recs[0].models], [matrix]
    )
    (ranking,), source = ranker_rankings(recs[:1], "val", "d", one)
    assert ranking[0] == 0 and source["pair_orders"] == ["both"] and len(passes) == 2
    with pytest.raises(ValueError, match="pair orders"):
        ranker_rankings(recs, "val", "d", TopKSettings(ranker_checkpoint=str(checkpoint), pair_orders="half"))


def test_a_pointwise_ranker_ranks_by_its_scores_with_n_passes_and_its_saved_scores_are_reused(
    tmp_path, monkeypatch
):
    from blender.rankers.saved_scores import write_candidate_scores
    from tests.rankers.test_listwise import listwise

    ranker = listwise()
    checkpoint = tmp_path / "run" / "best"
    ranker.save(checkpoint)
    recs = records(2)
    settings = TopKSettings(ranker_checkpoint=str(checkpoint), cache_dir=str(tmp_path / "cache"))
    rankings, source = ranker_rankings(recs, "train", "d", settings, QUIET)
    expected = rankings_from_scores(ranker.score_records(recs, QUIET))
    assert rankings == expected and source["source"] == "candidate_scores"
    assert source["pair_orders"] == [topk_module.POINTWISE]
    # A pointwise row is complete: it serves a request for both orders too, without ranking again.
    both = TopKSettings(
        ranker_checkpoint=str(checkpoint), cache_dir=str(tmp_path / "cache"), pair_orders="both"
    )
    assert ranker_rankings(recs, "train", "d", both, QUIET)[1]["computed"] == 0

    # The evaluation's saved scores of the val split are what the fuser reads (candidate 1 first here).
    write_candidate_scores(
        checkpoint.parent / "eval" / "candidate_scores_d_val.npz",
        [r.id for r in recs],
        [r.models for r in recs],
        [np.array([0.0, 5.0, 1.0, 2.0]), np.array([3.0, 0.0, 1.0, 2.0])],
    )

    def refuse(*args, **kwargs):
        raise AssertionError("scored again")

    monkeypatch.setattr(type(ranker), "score_records", refuse)
    rankings, source = ranker_rankings(recs, "val", "d", settings, QUIET)
    assert source["source"].endswith("candidate_scores_d_val.npz")
    assert rankings == [[1, 3, 2, 0], [0, 3, 2, 1]]


def test_stale_saved_candidate_scores_are_not_reused(tmp_path):
    import os

    from blender.rankers.saved_scores import read_candidate_scores, write_candidate_scores
    from tests.rankers.test_listwise import listwise

    checkpoint = tmp_path / "run" / "best"
    listwise().save(checkpoint)
    recs = records(2)
    path = write_candidate_scores(
        checkpoint.parent / "eval" / "candidate_scores_d_val.npz",
        [r.id for r in recs],
        [r.models for r in recs],
        [np.zeros(4), np.zeros(4)],
    )
    assert read_candidate_scores(path, recs, checkpoint) is not None
    assert read_candidate_scores(path, records(3), checkpoint) is None  # other records
    weights = checkpoint / "model.safetensors"
    os.utime(path, (weights.stat().st_mtime - 10,) * 2)
    assert read_candidate_scores(path, recs, checkpoint) is None  # older than the weights
