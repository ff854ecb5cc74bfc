"""scripts/pool_seeds.py: each run's pick is read off its own example's oracle scores (a recipe's pooled value and
the paired difference between two recipes are both built on this); scores to mix in must be of the same
candidates."""

from __future__ import annotations

import numpy as np
import pytest

from blender.rankers.saved_scores import write_candidate_scores
from blender.records.loading import read_jsonl
from tests.conftest import load_script, make_raw_record, write_jsonl


def test_each_runs_pick_is_scored_on_its_own_example():
    pool = load_script("pool_seeds")
    oracle = [np.array([0.1, 0.9, 0.5]), np.array([0.7, 0.2, 0.3])]  # two examples, three candidates
    picks = [np.array([1, 0]), np.array([2, 2])]  # run 0 picks the best of each; run 1 always the third
    scores = pool.picked_scores(picks, oracle)
    np.testing.assert_array_equal(scores, [[0.9, 0.7], [0.5, 0.3]])
    np.testing.assert_allclose(scores.mean(axis=0), [0.7, 0.5])  # the recipe's value per example
    assert pool.gpt_rank(picks[0], oracle) == 1.0
    assert pool.gpt_rank(picks[1], oracle) == 2.0  # second of three on both examples
    assert (
        pool.gpt_rank(np.array([0, 1]), [np.array([0.5, 0.5]), oracle[1]]) == 2.0
    )  # a tie shares rank 1; then 3


def test_scores_to_mix_in_are_checked_against_the_records(tmp_path):
    pool = load_script("pool_seeds")
    records = read_jsonl(write_jsonl(tmp_path / "val.jsonl", [make_raw_record(i, 3) for i in range(2)]))
    scores = [np.array([[0.1], [0.3], [0.2]]), np.array([[1.0], [0.0], [0.5]])]  # one task column each
    saved = write_candidate_scores(
        tmp_path / "probe.npz", [r.id for r in records], [r.models for r in records], scores
    )
    mixed = pool.saved_scores_of(saved, records)
    np.testing.assert_allclose(mixed[1], [1.0, 0.0, 0.5])
    other = write_candidate_scores(
        tmp_path / "other.npz", ["test/0", "test/9"], [r.models for r in records], scores
    )
    with pytest.raises(ValueError, match="other.npz.*not of these records"):
        pool.saved_scores_of(other, records)
