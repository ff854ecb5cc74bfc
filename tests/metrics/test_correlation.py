import numpy as np
from scipy.stats import spearmanr

from blender.metrics import rank_correlations
from blender.metrics.correlation import within_instruction_spearman


def test_per_column_correlation_and_footrule_by_hand():
    oracle = np.array([[1, 2, 3], [2, 1, 3], [3, 2, 1], [1, 3, 2]])
    predicted = np.array([[1, 2, 3], [1, 2, 3], [3, 1, 2], [2, 3, 1]])
    result = rank_correlations(predicted, oracle)
    columns = [np.corrcoef(predicted[:, k], oracle[:, k])[0, 1] for k in range(3)]
    assert np.isclose(result["pearson"], np.mean(columns))
    assert np.isclose(
        result["spearman"], np.mean([spearmanr(predicted[:, k], oracle[:, k]).statistic for k in range(3)])
    )
    # |diff| summed per example: 0, 2, 2, 2 -> mean 1.5
    assert np.isclose(result["footrule"], 1.5)


def test_identical_ranks_correlate_perfectly_and_constant_columns_are_left_out():
    ranks = np.array([[1, 2, 3], [2, 1, 3], [1, 2, 3]])
    result = rank_correlations(ranks, ranks)
    assert result["pearson"] == 1.0 and result["spearman"] == 1.0 and result["footrule"] == 0.0


def test_within_instruction_spearman():
    scores = [np.array([1.0, 2, 3]), np.array([3.0, 2, 1]), np.array([1.0, 1, 1])]
    truth = [np.array([1.0, 2, 3]), np.array([1.0, 2, 3]), np.array([1.0, 2, 3])]
    assert within_instruction_spearman(scores, truth) == 0.0  # (1 + (-1)) / 2; the tied one is left out
