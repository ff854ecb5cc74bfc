import numpy as np
import pytest

from blender.metrics import cmp_matrix, competition_ranks, ranks_from_cmp_results, scores_from_cmp_results


def test_competition_ranks_share_the_better_rank():
    np.testing.assert_array_equal(competition_ranks([3, 5, 5, 1]), [3, 1, 1, 4])
    np.testing.assert_array_equal(competition_ranks([0, 0, 0]), [1, 1, 1])


def test_matrix_and_scores_follow_the_papers_rules():
    models = ["a", "b", "c"]
    labels = {"a,b": "A is better", "a,c": "Same good", "b,c": "Same bad"}
    matrix = cmp_matrix(labels, models)
    np.testing.assert_allclose(matrix, [[0, 1, 0.5], [-1, 0, -0.5], [0.5, -0.5, 0]])
    # A win is +2 for the winner, -2 for the loser; ties cancel.
    np.testing.assert_allclose(scores_from_cmp_results(labels, models), [2, -2, 0])
    np.testing.assert_array_equal(ranks_from_cmp_results(labels, models), [1, 3, 2])


def test_b_is_better_respects_key_order():
    np.testing.assert_allclose(scores_from_cmp_results({"b,a": "B is better"}, ["a", "b"]), [2, -2])


def test_bad_keys_and_labels():
    with pytest.raises(ValueError, match="does not name two"):
        cmp_matrix({"a;b": "A is better"}, ["a", "b"])
    with pytest.raises(ValueError, match="expected one of"):
        cmp_matrix({"a,b": "tie"}, ["a", "b"])
