"""Turn a PairRanker's N×N logit matrix into candidate scores (higher is better).

logits[i, j] is the ranker's logit with candidate i as `<candidate1>` and j as `<candidate2>` (> 0: i
better); logits[i, i] = 0. The cross-encoder is not antisymmetric, so the full matrix holds both orders of
every pair (N(N−1) forward passes). Formulas as the paper's code at paper time (PAPER.md §6).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def max_logits(logits: np.ndarray) -> np.ndarray:
    """Score each candidate by its summed pairwise margin, s_i = Σ_j (M[i,j] − M[j,i]).

    Args:
        logits: [n, n]; logits[i, j] > 0 when candidate i beats candidate j.
    Returns:
        [n] scores, higher is better.

    Example: M = [[0, 2], [-1, 0]] gives s = [2 − (−1), −1 − 2] = [3, −3].
    """
    return (logits - logits.T).sum(axis=-1)


def max_wins(logits: np.ndarray) -> np.ndarray:
    """Count wins in both orders: s_i = #{j: M[i,j] > 0} + #{j: M[j,i] < 0}.

    Example: M = [[0, 2], [-1, 0]] gives s = [1 + 1, 0 + 0] = [2, 0].
    """
    return (logits > 0).sum(axis=-1) + (logits < 0).sum(axis=-2)


CompareBatch = Callable[[list[tuple[int, int, int]]], np.ndarray]


def bubble_runs(
    n_candidates: Sequence[int],
    compare: CompareBatch,
    n_runs: int = 1,
    seed: int = 0,
    skip: Sequence[int] = (),
) -> list[np.ndarray]:
    """Bubble passes over a random order of each example's candidates, all examples in lockstep.

    Each pass walks the current order once and carries the better of each adjacent pair to the right, so
    after one pass (N−1 comparisons) the last position holds the predicted best ("bubble run",
    PAPER.md §6) and after N−1 passes the order is fully sorted. A comparison of a and b looks at both
    orders: a wins when M[a,b] − M[b,a] > 0.

    Args:
        n_candidates: candidates per example.
        compare: given (example, a, b) triples, returns M[a,b] − M[b,a] for each; called once per step
            with that step's comparisons of every example, so a ranker can batch them.
        n_runs: passes (1 = the paper's single run).
        seed: seeds the random starting order of each example.
        skip: candidate counts of examples before these in a larger set: their orders are drawn first and
            dropped, so a shard of the set starts from the orders the whole set would (sharded evaluation).
    Returns:
        Per example, [n] scores: the final position in the order (higher is better).
    """
    rng = np.random.default_rng(seed)
    for n in skip:
        rng.permutation(n)
    orders = [list(rng.permutation(n)) for n in n_candidates]
    if not orders:
        return []
    longest = max(n_candidates)
    for run in range(min(n_runs, longest - 1)):
        for step in range(longest - 1 - run):
            active = [e for e, order in enumerate(orders) if step < len(order) - 1 - run]
            triples = [(e, int(orders[e][step]), int(orders[e][step + 1])) for e in active]
            if not triples:
                continue
            margins = compare(triples)
            for (e, a, b), margin in zip(triples, margins, strict=True):
                if margin > 0:  # a is better: carry it right
                    orders[e][step], orders[e][step + 1] = b, a
    scores = []
    for order in orders:
        position = np.empty(len(order))
        position[np.asarray(order)] = np.arange(len(order))
        scores.append(position)
    return scores


def bubble(logits: np.ndarray, n_runs: int = 1, seed: int = 0) -> np.ndarray:
    """One bubble run read off a full matrix: the same pick as running it online (see `bubble_runs`).

    Example: with M[i,j] = v_i − v_j and v = [0, 2, 1], the winner (score 2) is candidate 1.
    """
    (scores,) = bubble_runs(
        [len(logits)],
        lambda triples: np.array([logits[a, b] - logits[b, a] for _, a, b in triples]),
        n_runs,
        seed,
    )
    return scores


def pair_orders(n_candidates: int, orders: str = "both", seed: int | None = None) -> list[tuple[int, int]]:
    """The (candidate1, candidate2) passes a matrix is built from.

    "both": every ordered pair, N(N−1) passes (the paper). "one": one order of each pair, N(N−1)/2 passes,
    oriented so every candidate goes first as often as second (N odd; ±1 when N is even): i before j when
    (j − i) mod N ≤ (N−1)/2, over the candidates shuffled by `seed`. The balance keeps a ranker's lean towards
    one position out of every MaxLogits score. The shuffle matters as much: candidates sit at fixed indices in
    a dataset (one model per column), and one fixed orientation decides which model goes first against which
    in every instruction. Measured on alpaca_blend_modern val (docs/results/fuser.md), the fixed pattern and
    its mirror picked 0.540 and 0.467 where the full matrix picked 0.519; shuffled per instruction, 0.515.

    Args:
        seed: shuffles the candidates before orienting (give each instruction its own); None: no shuffle.
    Example: n=3, "one", no seed gives [(0, 1), (1, 2), (2, 0)]: each candidate first once, second once.
    """
    if orders == "both":
        return [(i, j) for i in range(n_candidates) for j in range(n_candidates) if i != j]
    if orders != "one":
        raise ValueError(f"pair orders {orders!r}; choose both (N(N-1) passes) or one (half of them)")
    half = (n_candidates - 1) // 2
    slots = [
        (a, b)
        for a in range(n_candidates)
        for b in range(n_candidates)
        if 1 <= (b - a) % n_candidates <= half or (2 * (b - a) == n_candidates)
    ]
    if seed is None:
        return slots
    shuffled = np.random.default_rng(seed).permutation(n_candidates)
    return [(int(shuffled[a]), int(shuffled[b])) for a, b in slots]


def one_order_matrix(logits: np.ndarray, seed: int | None = None) -> np.ndarray:
    """The matrix as if only `pair_orders(n, "one", seed)` had been run: those entries kept, each other order
    filled in as their negation, M[j, i] = −M[i, j] (the pair logit s1 − s2 read from the other side).

    Every aggregation then works unchanged: MaxLogits becomes s_i = 2 Σ_j M[i, j] over the run orders.
    """
    completed = np.zeros(np.shape(logits), dtype=np.float64)
    for i, j in pair_orders(len(logits), "one", seed):
        completed[i, j], completed[j, i] = logits[i, j], -logits[i, j]
    return completed


AGGREGATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "max_logits": max_logits,
    "max_wins": max_wins,
    "bubble": bubble,
}


def forward_passes(aggregation: str, n_candidates: int, n_runs: int = 1) -> int:
    """Forward passes one example costs under an aggregation (full matrix: N(N−1); bubble: 2 per comparison)."""
    if aggregation == "bubble":
        runs = min(n_runs, n_candidates - 1)
        return 2 * sum(n_candidates - 1 - r for r in range(runs))
    return n_candidates * (n_candidates - 1)


def get_aggregation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The aggregation function by name; an unknown name fails listing the choices."""
    if name not in AGGREGATIONS:
        raise KeyError(f"unknown aggregation {name!r}; choose one of {sorted(AGGREGATIONS)}")
    return AGGREGATIONS[name]
