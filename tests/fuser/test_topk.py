"""The ranker's top-K: computed once, cached per record, reused from saved matrices; the random ablation."""

from __future__ import annotations

import numpy as np
import pytest

from blender.data.schema import parse_record
from blender.evaluation.report import write_pair_logits
from blender.fuser import topk as topk_module
from blender.fuser.topk import (
    RankerNotFoundError,
    TopKSettings,
    random_rankings,
    ranker_rankings,
    rankings_from_scores,
)
from blender.rankers.predict import InferenceSettings
from tests.conftest import make_raw_record

QUIET = InferenceSettings(show_progress=False)


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
    write_pair_logits(checkpoint.parent / "eval" / "pair_logits_d_val.npz", [r.id for r in recs],
                      [r.models for r in recs], matrices)  # fmt: skip
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
    from blender.evaluation.report import read_pair_logits

    checkpoint = tmp_path / "run" / "best"
    tiny_ranker.save(checkpoint)
    broken = checkpoint.parent / "eval" / "pair_logits_d_val.npz"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not an npz file")
    assert read_pair_logits(broken, records(2), checkpoint) is None
