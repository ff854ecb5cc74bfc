"""GPT-Rank: ranks from an LLM judge's pairwise labels, as LLM-Blender's `get_ranks_from_chatgpt_cmps`.

PAPER.md §5: a label on the key "A,B" (A shown first) fills an N×N matrix M with
"A is better" +1/−1, "B is better" −1/+1, "Same good" +½/+½, "Same bad" −½/−½; candidate i scores
Σ_j (M[i,j] − M[j,i]) (MaxLogits over the labels), and ranks are competition ranks (1 = best, ties share
the better rank: 1, 1, 3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from blender.records.schema import CMP_LABELS

# (M[a, b], M[b, a]) added for each label.
_LABEL_VALUES = {
    "A is better": (1.0, -1.0),
    "B is better": (-1.0, 1.0),
    "Same good": (0.5, 0.5),
    "Same bad": (-0.5, -0.5),
}


def cmp_matrix(cmp_results: Mapping[str, str], models: Sequence[str]) -> np.ndarray:
    """Fill the N×N comparison matrix from judge labels.

    Args:
        cmp_results: {"modelA,modelB": label}, one of `CMP_LABELS` per judged pair.
        models: the candidates' model names, in candidate order.
    Returns:
        [n, n] float matrix M with M[i, j] > 0 when candidate i was judged better than j.
    """
    index = {m: i for i, m in enumerate(models)}
    matrix = np.zeros((len(models), len(models)))
    for key, label in cmp_results.items():
        model_a, sep, model_b = key.partition(",")
        if not sep or model_a not in index or model_b not in index:
            raise ValueError(
                f"cmp_results key {key!r} does not name two of the candidates' models {list(models)}"
            )
        if label not in _LABEL_VALUES:
            raise ValueError(f"cmp_results[{key!r}] = {label!r}; expected one of {list(CMP_LABELS)}")
        a, b = index[model_a], index[model_b]
        ab, ba = _LABEL_VALUES[label]
        matrix[a, b] += ab
        matrix[b, a] += ba
    return matrix


def scores_from_cmp_results(cmp_results: Mapping[str, str], models: Sequence[str]) -> np.ndarray:
    """Score each candidate by Σ_j (M[i,j] − M[j,i]); ties cancel, a win counts +2 (PAPER.md §5)."""
    matrix = cmp_matrix(cmp_results, models)
    return (matrix - matrix.T).sum(axis=-1)


def competition_ranks(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Rank scores so that 1 is best and ties share the better rank (1, 1, 3), as the paper's code.

    Args:
        scores: [n] scores, higher is better.
    Returns:
        [n] integer ranks.
    """
    scores = np.asarray(scores, dtype=float)
    # rank = 1 + number of candidates with a strictly higher score.
    return 1 + (scores[None, :] > scores[:, None]).sum(axis=1)


def ranks_from_cmp_results(cmp_results: Mapping[str, str], models: Sequence[str]) -> np.ndarray:
    """GPT-Rank of every candidate from the judge's labels (1 = best)."""
    return competition_ranks(scores_from_cmp_results(cmp_results, models))
