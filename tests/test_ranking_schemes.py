import numpy as np
import pytest

from blender.aggregation import max_logits
from blender.ranking_schemes import SCHEMES, min_passes, rank_with_scheme, replay_scheme


def consistent_matrix(values):
    values = np.asarray(values, dtype=float)
    matrix = values[:, None] - values[None, :]
    np.fill_diagonal(matrix, 0)
    return matrix


def counting(matrices):
    """A `pair_logits` over saved matrices that records every call."""
    calls = []

    def pair_logits(triples):
        calls.append(list(triples))
        return np.array([matrices[e][a, b] for e, a, b in triples])

    return pair_logits, calls


def test_full_is_max_logits_of_every_pass():
    # s0 = (2 − (−1)) + (1 − 0) = 4; s1 = (−1 − 2) + (3 − (−2)) = 2; s2 = (0 − 1) + (−2 − 3) = −6.
    matrix = np.array([[0.0, 2.0, 1.0], [-1.0, 0.0, 3.0], [0.0, -2.0, 0.0]])
    result = replay_scheme([matrix], "full")
    np.testing.assert_allclose(result.scores[0], [4.0, 2.0, -6.0])
    np.testing.assert_allclose(result.scores[0], max_logits(matrix))
    assert result.passes == [6]


def test_full_in_one_order_runs_each_pair_once():
    matrix = consistent_matrix([0.0, 3.0, 1.0, 2.0, -1.0])
    pair_logits, calls = counting([matrix])
    result = rank_with_scheme("full", [5], pair_logits, orders="one")
    (asked,) = calls
    assert len(asked) == 10 and {frozenset((a, b)) for _, a, b in asked} == {
        frozenset((a, b)) for a in range(5) for b in range(a + 1, 5)
    }
    firsts = np.bincount([a for _, a, _ in asked], minlength=5)
    assert firsts.tolist() == [2, 2, 2, 2, 2]  # N odd: each candidate first in half its pairs
    # One order: s_i = Σ_j (v_i − v_j) = 5 v_i − Σ v = 5 v_i − 5.
    np.testing.assert_allclose(result.scores[0], [-5.0, 10.0, 0.0, 5.0, -10.0])


def test_reference_scores_are_margins_against_the_reference():
    # The docstring example: v = [0, 3, 1, 2], reference 0: M[i,0] − M[0,i] = 2(v_i − v_0).
    matrix = consistent_matrix([0.0, 3.0, 1.0, 2.0])
    result = replay_scheme([matrix], "reference", references=[[0]])
    np.testing.assert_allclose(result.scores[0], [0.0, 6.0, 2.0, 4.0])
    assert result.passes == [6]
    one = replay_scheme([matrix], "reference", orders="one", references=[[0]])
    np.testing.assert_allclose(one.scores[0], [0.0, 3.0, 1.0, 2.0])
    assert one.passes == [3]


def test_reference_takes_a_second_reference_when_the_budget_holds_it():
    # A second reference (1) costs 2 × 3 − 2 = 4 passes: its pair with 0 is already run. Mean margin over
    # both: (2(v_i − v_0) + 2(v_i − v_1)) / 2 = 2 v_i − 3.
    matrix = consistent_matrix([0.0, 3.0, 1.0, 2.0])
    result = replay_scheme([matrix], "reference", budget=10, references=[[0, 1]])
    np.testing.assert_allclose(result.scores[0], [-3.0, 3.0, -1.0, 1.0])
    assert result.passes == [10]
    assert replay_scheme([matrix], "reference", budget=9, references=[[0, 1]]).passes == [6]


def test_reference_with_every_candidate_is_max_logits_over_n():
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(5, 5))
    np.fill_diagonal(matrix, 0)
    result = replay_scheme([matrix], "reference", budget=20)
    np.testing.assert_allclose(result.scores[0], max_logits(matrix) / 5)


def test_top_k_refines_the_head_by_its_own_matrix():
    # Against reference 0, candidate 3 looks best (6) before 1 (4), 2 (2), 0; but 1 beats 3 directly
    # (M[1,3] − M[3,1] = 10). Budget 8 = the reference round (6) + the head of two (2).
    matrix = consistent_matrix([0.0, 2.0, 1.0, 3.0])
    matrix[1, 3], matrix[3, 1] = 5.0, -5.0
    result = replay_scheme([matrix], "top_k", budget=8, references=[[0]])
    np.testing.assert_array_equal(result.scores[0], [0.0, 3.0, 1.0, 2.0])  # 1 > 3 > 2 > 0
    assert result.passes == [8]
    # With the smallest budget the head is {3, 1} as well (the reference round and one comparison).
    assert min_passes("top_k", 4) == 8


def test_bubble_scheme_finds_the_top_and_sorts_with_the_full_budget():
    values = [0.3, 2.0, -1.0, 1.0, 0.5]
    matrix = consistent_matrix(values)
    for seed in range(4):
        assert int(np.argmax(replay_scheme([matrix], "bubble", seed=seed).scores[0])) == 1
        full = replay_scheme([matrix], "bubble", budget=20, seed=seed)
        np.testing.assert_array_equal(np.argsort(full.scores[0]), np.argsort(values))


def test_knockout_champion_wins_every_round():
    # Four candidates, one bracket: the best wins two matches (position 3), the weakest loses its first.
    matrix = consistent_matrix([0.0, 3.0, 1.0, 2.0])
    for seed in range(6):
        result = replay_scheme([matrix], "knockout", seed=seed)
        assert result.passes == [6]  # N − 1 = 3 matches, both orders
        assert result.scores[0][1] == 3
        assert result.scores[0][0] in (0, 1)


def test_knockout_two_candidates():
    # M[0,1] − M[1,0] = 1 − (−3) = 4 > 0: candidate 0 wins.
    result = replay_scheme([np.array([[0.0, 1.0], [-3.0, 0.0]])], "knockout")
    np.testing.assert_array_equal(result.scores[0], [1.0, 0.0])


def test_swiss_second_round_pairs_winners_and_losers():
    # Round 1 draws two matches; round 2 pairs the two winners and the two losers, who have not met. The
    # best (1) wins both, the weakest (0) loses both, whatever the draw.
    matrix = consistent_matrix([0.0, 3.0, 1.0, 2.0])
    for seed in range(6):
        pair_logits, calls = counting([matrix])
        result = rank_with_scheme("swiss", [4], pair_logits, budget=8, seed=seed)
        assert len(calls) == 2 and result.passes == [8]
        pairs = {frozenset((a, b)) for call in calls for _, a, b in call}
        assert len(pairs) == 4  # no rematch
        assert result.scores[0][1] == 3 and result.scores[0][0] == 0


def test_swiss_bye_goes_to_the_lowest_placed_and_counts_a_win():
    matrix = consistent_matrix([0.0, 3.0, 1.0])
    pair_logits, calls = counting([matrix])
    rank_with_scheme("swiss", [3], pair_logits, budget=4, seed=0)
    # Two rounds of one match each (2 passes): whoever sat out round 1 plays in round 2.
    first, second = ({frozenset((a, b)) for _, a, b in call} for call in calls)
    sat_out = ({0, 1, 2} - set().union(*first)).pop()
    assert any(sat_out in pair for pair in second)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("orders", ["both", "one"])
def test_the_budget_is_respected_and_no_pass_runs_twice(scheme, orders):
    rng = np.random.default_rng(7)
    sizes = [2, 5, 11, 24]
    matrices = [rng.normal(size=(n, n)) for n in sizes]
    for matrix in matrices:
        np.fill_diagonal(matrix, 0)
    for budget in (None, 24, 60, 138, 1000):
        if budget is not None and any(budget < min_passes(scheme, n, orders) for n in sizes):
            with pytest.raises(ValueError, match="below"):
                rank_with_scheme(scheme, sizes, counting(matrices)[0], budget, orders)
            continue
        pair_logits, calls = counting(matrices)
        result = rank_with_scheme(scheme, sizes, pair_logits, budget, orders, seed=1)
        for e, n in enumerate(sizes):
            asked = [(a, b) for call in calls for f, a, b in call if f == e]
            limit = min_passes(scheme, n, orders) if budget is None else budget
            assert len(asked) == len(set(asked)) == result.passes[e] <= limit
            assert all(a != b and 0 <= a < n and 0 <= b < n for a, b in asked)
            assert result.scores[e].shape == (n,) and np.isfinite(result.scores[e]).all()


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_online_and_replayed_runs_agree(scheme):
    rng = np.random.default_rng(11)
    matrices = [rng.normal(size=(n, n)) for n in (6, 9)]
    budget = 72 if scheme == "full" else 40
    replayed = replay_scheme(matrices, scheme, budget=budget, seed=5)
    online = rank_with_scheme(scheme, [6, 9], counting(matrices)[0], budget=budget, seed=5)
    for a, b in zip(replayed.scores, online.scores, strict=True):
        np.testing.assert_array_equal(a, b)


def test_examples_run_in_lockstep_one_call_per_step():
    matrices = [consistent_matrix(v) for v in ([0, 3, 1], [5, 1, 2, 0], [1, 2])]
    pair_logits, calls = counting(matrices)
    rank_with_scheme("reference", [3, 4, 2], pair_logits)
    assert len(calls) == 1 and len(calls[0]) == 4 + 6 + 2


def test_min_passes_and_unknown_names():
    names = ("full", "bubble", "knockout", "swiss", "reference", "top_k")
    assert [min_passes(s, 24) for s in names] == [552, 46, 46, 24, 46, 48]
    assert min_passes("swiss", 24, "one") == 12
    with pytest.raises(KeyError, match="bubble.*full.*knockout.*reference.*swiss.*top_k"):
        min_passes("borda", 5)
    with pytest.raises(ValueError, match="pair orders"):
        min_passes("full", 5, "three")
