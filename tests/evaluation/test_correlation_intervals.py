import numpy as np

from blender.evaluation.ranking import bootstrap_indices, correlation_intervals
from blender.metrics.correlation import rank_correlations


def test_intervals_bracket_the_point_estimates():
    rng = np.random.default_rng(0)
    oracle = np.array([rng.permutation(6) + 1 for _ in range(60)])
    noisy = np.array([np.argsort(np.argsort(o + rng.normal(0, 2, 6))) + 1 for o in oracle])
    point = rank_correlations(noisy, oracle)
    intervals = correlation_intervals(noisy, oracle, bootstrap_indices(60, 300))
    for key in ("pearson", "spearman", "footrule"):
        low, high = intervals[f"{key}_ci"]
        assert low <= point[key] <= high and low < high


def test_identical_rankings_have_a_point_interval():
    oracle = np.array([[1, 2, 3], [3, 1, 2], [2, 3, 1], [1, 3, 2]])
    intervals = correlation_intervals(oracle, oracle, bootstrap_indices(4, 50))
    assert intervals["spearman_ci"] == (1.0, 1.0) and intervals["footrule_ci"] == (0.0, 0.0)
