"""scripts/pool_seeds.py: each run's pick is read off its own example's oracle scores (a recipe's pooled value and
the paired difference between two recipes are both built on this)."""

from __future__ import annotations

import numpy as np

from tests.conftest import load_script


def test_each_runs_pick_is_scored_on_its_own_example():
    pool = load_script("pool_seeds")
    oracle = [np.array([0.1, 0.9, 0.5]), np.array([0.7, 0.2, 0.3])]  # two examples, three candidates
    picks = [np.array([1, 0]), np.array([2, 2])]  # run 0 picks the best of each; run 1 always the third
    scores = pool.picked_scores(picks, oracle)
    np.testing.assert_array_equal(scores, [[0.9, 0.7], [0.5, 0.3]])
    np.testing.assert_allclose(scores.mean(axis=0), [0.7, 0.5])  # the recipe's value per example
