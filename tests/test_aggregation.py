import numpy as np
import pytest

from blender.aggregation import (
    AGGREGATIONS,
    bubble,
    bubble_runs,
    forward_passes,
    get_aggregation,
    max_logits,
    max_wins,
    one_order_matrix,
    pair_orders,
)


def consistent_matrix(values):
    values = np.asarray(values, dtype=float)
    matrix = values[:, None] - values[None, :]
    np.fill_diagonal(matrix, 0)
    return matrix


def test_max_logits_docstring_example():
    np.testing.assert_allclose(max_logits(np.array([[0.0, 2.0], [-1.0, 0.0]])), [3.0, -3.0])


def test_max_wins_docstring_example():
    np.testing.assert_allclose(max_wins(np.array([[0.0, 2.0], [-1.0, 0.0]])), [2, 0])


def test_max_wins_counts_both_orders():
    # Order matters: candidate 0 beats 1 as candidate1 (M[0,1] > 0) but loses as candidate2 (M[1,0] > 0).
    matrix = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
    np.testing.assert_allclose(max_wins(matrix), [2 + 1, 1 + 0, 1 + 1])


def test_every_aggregation_finds_the_best_of_a_consistent_matrix():
    matrix = consistent_matrix([0.3, 2.0, -1.0, 1.0, 0.5])
    for name, aggregate in AGGREGATIONS.items():
        assert int(np.argmax(aggregate(matrix))) == 1, name


def test_bubble_full_runs_sort_and_one_run_finds_the_top():
    values = [0.3, 2.0, -1.0, 1.0, 0.5]
    matrix = consistent_matrix(values)
    for seed in range(5):
        assert np.argmax(bubble(matrix, n_runs=1, seed=seed)) == 1
        np.testing.assert_array_equal(np.argsort(bubble(matrix, n_runs=4, seed=seed)), np.argsort(values))


def test_bubble_online_asks_only_for_n_minus_1_comparisons_in_lockstep():
    matrices = [consistent_matrix(v) for v in ([0, 3, 1], [5, 1, 2, 0])]
    calls = []

    def compare(triples):
        calls.append(triples)
        return np.array([matrices[e][a, b] - matrices[e][b, a] for e, a, b in triples])

    scores = bubble_runs([3, 4], compare, n_runs=1, seed=0)
    assert [int(np.argmax(s)) for s in scores] == [1, 0]
    assert sum(len(c) for c in calls) == 2 + 3
    assert len(calls) == 3  # one batched call per step


def test_forward_passes():
    assert forward_passes("max_logits", 11) == 110
    assert forward_passes("bubble", 11) == 20
    assert forward_passes("bubble", 11, n_runs=10) == 110


def test_unknown_aggregation_lists_choices():
    with pytest.raises(KeyError, match="bubble.*max_logits.*max_wins"):
        get_aggregation("borda")


@pytest.mark.parametrize("n", [2, 3, 4, 11, 12])
@pytest.mark.parametrize("seed", [None, 0, 1])
def test_one_order_covers_each_pair_once_balanced_by_position(n, seed):
    passes = pair_orders(n, "one", seed)
    assert len(passes) == n * (n - 1) // 2 == len({frozenset(p) for p in passes})
    firsts = [sum(1 for i, _ in passes if i == c) for c in range(n)]
    assert max(firsts) - min(firsts) == (0 if n % 2 else 1)
    assert len(pair_orders(n, "both")) == n * (n - 1)


def test_one_order_docstring_example_and_unknown_orders():
    assert pair_orders(3, "one") == [(0, 1), (1, 2), (2, 0)]
    with pytest.raises(ValueError, match="choose both"):
        pair_orders(3, "all")


def test_one_order_matrix_cancels_a_position_bias():
    """A ranker that adds +1 to whoever goes first: both orders cancel it, and so does the balanced half."""
    values = [0.0, 3.0, 1.0, 2.0, 0.5]
    biased = consistent_matrix(values) + 1.0
    np.fill_diagonal(biased, 0)
    for seed in (None, 0, 1):
        half = one_order_matrix(biased, seed)
        np.testing.assert_allclose(half, -half.T)
        np.testing.assert_allclose(max_logits(half), max_logits(biased))
        assert np.argmax(max_logits(half)) == 1


def test_the_seed_shuffles_which_candidate_goes_first():
    """Without a shuffle candidate 0 goes first against 1..5 in every instruction, whichever model sits there."""
    orientations = {frozenset(pair_orders(11, "one", seed)) for seed in range(5)}
    assert len(orientations) == 5
    assert pair_orders(11, "one", 3) == pair_orders(11, "one", 3)
