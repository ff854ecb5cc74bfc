"""Rankings from a budget of forward passes, without the full N×N matrix.

The full matrix costs N(N−1) passes: 110 for 11 candidates, 552 for 24, 9,900 for 100 samples. Each scheme
here takes the passes it may use and asks for them step by step: run online (`rank_with_scheme` with a
ranker behind `pair_logits`, only the asked passes reach the model; `blender.rankers.predict.
scheme_scores_online`) or replayed on a saved full matrix (`replay_scheme`, for quality-vs-passes curves),
with the same picks either way. The paper's bubble run (PAPER.md §6) is `bubble` with the smallest budget;
`blender.aggregation` keeps the full-matrix aggregations.

Schemes are generators: each yields the passes it needs next and is sent their logits, so the driver can
gather every example's requests into one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np

PairLogits = Callable[[list[tuple[int, int, int]]], np.ndarray]
"""Given (example, first, second) triples, returns M[first, second] for each: one forward pass per triple."""

Pass = tuple[int, int]
Steps = Generator[list[Pass], np.ndarray, np.ndarray]


class PassLedger:
    """One example's passes: those run (a pass is never run twice) and the budget left.

    A comparison of a and b is both orders, margin M[a,b] − M[b,a] (2 passes, as bubble), or one order
    (1 pass), margin M[a,b] read as −M[b,a] from the other side; the order is fixed per pair by a random
    rotation, so every candidate goes first in about half its comparisons (the balance of `pair_orders`).
    """

    def __init__(self, n_candidates: int, budget: int, orders: str, rng: np.random.Generator) -> None:
        self.n = n_candidates
        self.left = budget
        self.both = orders == "both"
        self.per_comparison = 2 if self.both else 1
        self.logits: dict[Pass, float] = {}
        self.slot = np.argsort(rng.permutation(n_candidates))

    def _one_order(self, a: int, b: int) -> Pass:
        if (a, b) in self.logits or (b, a) in self.logits:
            return (a, b) if (a, b) in self.logits else (b, a)
        gap = (self.slot[b] - self.slot[a]) % self.n
        first = 2 * gap < self.n if 2 * gap != self.n else self.slot[a] < self.slot[b]
        return (a, b) if first else (b, a)

    def new_passes(self, pairs: Sequence[Pass]) -> list[Pass]:
        """The passes comparing `pairs` needs that have not run yet."""
        wanted = (p for a, b in pairs for p in ([(a, b), (b, a)] if self.both else [self._one_order(a, b)]))
        return [p for p in dict.fromkeys(wanted) if p not in self.logits]

    def cost(self, pairs: Sequence[Pass]) -> int:
        return len(self.new_passes(pairs))

    def margin(self, a: int, b: int) -> float:
        if self.both:
            return self.logits[(a, b)] - self.logits[(b, a)]
        return self.logits[(a, b)] if (a, b) in self.logits else -self.logits[(b, a)]

    def compare(self, pairs: Sequence[Pass]) -> Steps:
        """Run the passes `pairs` still needs (yielded to the driver), then return their margins (> 0: a wins)."""
        new = self.new_passes(pairs)
        if len(new) > self.left:
            raise RuntimeError(f"a scheme asked for {len(new)} passes with {self.left} left in its budget")
        if new:
            logits = yield new
            self.logits.update(zip(new, (float(x) for x in logits), strict=True))
            self.left -= len(new)
        return np.array([self.margin(a, b) for a, b in pairs], dtype=np.float64)


def _positions(primary: np.ndarray, secondary: np.ndarray | None = None) -> np.ndarray:
    """Each candidate's place in the order by `primary`, ties broken by `secondary` (0 = worst)."""
    keys = (primary,) if secondary is None else (secondary, primary)
    position = np.empty(len(primary))
    position[np.lexsort(keys)] = np.arange(len(primary))
    return position


def _full(n: int, ledger: PassLedger, rng: np.random.Generator, preferred: Sequence[int]) -> Steps:
    """MaxLogits over every pair (both orders: exactly `max_logits` of the full matrix)."""
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    margins = yield from ledger.compare(pairs)
    table = np.zeros((n, n))
    for (a, b), m in zip(pairs, margins, strict=True):
        table[a, b], table[b, a] = m, -m
    return table.sum(axis=1)


def _bubble(n: int, ledger: PassLedger, rng: np.random.Generator, preferred: Sequence[int]) -> Steps:
    """`bubble_runs` for one example: as many runs as the budget holds (run r costs at most N−1−r comparisons;
    a pair met in an earlier run costs nothing). After r runs the top r places are sorted."""
    order = [int(c) for c in rng.permutation(n)]
    for run in range(n - 1):
        if run and ledger.per_comparison * (n - 1 - run) > ledger.left:
            break
        for step in range(n - 1 - run):
            (margin,) = yield from ledger.compare([(order[step], order[step + 1])])
            if margin > 0:  # the first is better: carry it right
                order[step], order[step + 1] = order[step + 1], order[step]
    return _positions(np.argsort(order).astype(float))


def _knockout(n: int, ledger: PassLedger, rng: np.random.Generator, preferred: Sequence[int]) -> Steps:
    """Single-elimination brackets over random draws (N−1 comparisons each, byes to the last of an odd round),
    one more bracket while the budget holds one. Score: wins over all brackets, ties by mean margin."""
    wins, margin_sum, played = np.zeros(n), np.zeros(n), np.zeros(n)
    for bracket in range(n):
        if bracket and ledger.per_comparison * (n - 1) > ledger.left:
            break
        spent = ledger.left
        alive = [int(c) for c in rng.permutation(n)]
        while len(alive) > 1:
            pairs = [(alive[k], alive[k + 1]) for k in range(0, len(alive) - 1, 2)]
            margins = yield from ledger.compare(pairs)
            winners = []
            for (a, b), m in zip(pairs, margins, strict=True):
                winners.append(a if m > 0 else b)
                margin_sum[[a, b]] += m, -m
                played[[a, b]] += 1
            wins[winners] += 1
            alive = winners + alive[2 * len(pairs) :]
        if ledger.left == spent:
            break  # every match of this draw was played before: another draw teaches nothing
    return _positions(wins, margin_sum / np.maximum(played, 1))


def _swiss(n: int, ledger: PassLedger, rng: np.random.Generator, preferred: Sequence[int]) -> Steps:
    """Swiss rounds: ⌊N/2⌋ comparisons a round, each pairing neighbours in the standings (points, then mean
    margin; the first round a random draw) who have not met; with N odd the lowest-placed candidate without
    a bye sits out and scores a win (as a chess bye). Rounds go on while the budget holds the next one and it
    brings a new pass, at most N−1."""
    points, margin_sum, played = np.zeros(n), np.zeros(n), np.zeros(n)
    met: set[frozenset[int]] = set()
    had_bye: set[int] = set()
    standings = [int(c) for c in rng.permutation(n)]
    for round_ in range(n - 1):
        pool = list(standings)
        bye = next(c for c in reversed(pool) if c not in had_bye) if n % 2 else None
        if bye is not None:
            pool.remove(bye)
        pairs = []
        while pool:
            a = pool.pop(0)
            k = next((i for i, b in enumerate(pool) if frozenset((a, b)) not in met), 0)
            pairs.append((a, pool.pop(k)))
        cost = ledger.cost(pairs)
        if round_ and (cost > ledger.left or cost == 0):
            break
        margins = yield from ledger.compare(pairs)
        for (a, b), m in zip(pairs, margins, strict=True):
            points[a if m > 0 else b] += 1
            margin_sum[[a, b]] += m, -m
            played[[a, b]] += 1
            met.add(frozenset((a, b)))
        if bye is not None:
            points[bye] += 1
            had_bye.add(bye)
        mean_margin = margin_sum / np.maximum(played, 1)
        standings = [int(c) for c in np.lexsort((-mean_margin, -points))]
    return _positions(points, margin_sum / np.maximum(played, 1))


def _reference_order(n: int, rng: np.random.Generator, preferred: Sequence[int]) -> list[int]:
    rest = [int(c) for c in rng.permutation(n) if int(c) not in preferred]
    return [int(c) for c in preferred] + rest


def _reference(n: int, ledger: PassLedger, rng: np.random.Generator, preferred: Sequence[int]) -> Steps:
    """Every candidate against a reference (N−1 comparisons), then against more references while the budget
    holds one (pairs between references are met once). Score: mean margin over the references, a reference's
    own term 0: MaxLogits restricted to the references' columns (all N of them: `max_logits` / N)."""
    total, used = np.zeros(n), 0
    for reference in _reference_order(n, rng, preferred):
        pairs = [(i, reference) for i in range(n) if i != reference]
        if used and ledger.cost(pairs) > ledger.left:
            break
        margins = yield from ledger.compare(pairs)
        total[[i for i, _ in pairs]] += margins
        used += 1
    return total / max(used, 1)


def _top_k(n: int, ledger: PassLedger, rng: np.random.Generator, preferred: Sequence[int]) -> Steps:
    """A first ranking against one reference (N−1 comparisons), then the full matrix of its head: the largest
    top k whose pairs the budget holds (pairs met against the reference cost nothing). The head is ordered by
    MaxLogits among themselves, above the rest in their first order."""
    (reference,) = _reference_order(n, rng, preferred)[:1]
    first = np.zeros(n)
    others = [i for i in range(n) if i != reference]
    first[others] = yield from ledger.compare([(i, reference) for i in others])
    ranked = [int(c) for c in np.argsort(-first, kind="stable")]

    def head_pairs(k: int) -> list[Pass]:
        return [(ranked[a], ranked[b]) for a in range(k) for b in range(a + 1, k)]

    k = max((k for k in range(2, n + 1) if ledger.cost(head_pairs(k)) <= ledger.left), default=1)
    head_score = np.zeros(n)
    pairs = head_pairs(k)
    margins = yield from ledger.compare(pairs)
    for (a, b), m in zip(pairs, margins, strict=True):
        head_score[a] += m
        head_score[b] -= m
    in_head = np.zeros(n)
    in_head[ranked[:k]] = 1
    # Lexicographic: in the head first, then (head) MaxLogits among the head, then the first ranking.
    return _positions(in_head, np.where(in_head > 0, head_score, first))


SCHEMES: dict[str, Callable[..., Steps]] = {
    "full": _full,
    "bubble": _bubble,
    "knockout": _knockout,
    "swiss": _swiss,
    "reference": _reference,
    "top_k": _top_k,
}
PAIR_ORDERS = ("both", "one")


def min_passes(scheme: str, n_candidates: int, orders: str = "both") -> int:
    """The fewest forward passes a scheme can rank N candidates with (its budget may not be lower).

    full: every pair; bubble, knockout and reference: N−1 comparisons; swiss: one round, ⌊N/2⌋; top_k: the
    reference round and one more comparison. A comparison is 2 passes in both orders, 1 in one.
    """
    if scheme not in SCHEMES:
        raise KeyError(f"unknown ranking scheme {scheme!r}; choose one of {sorted(SCHEMES)}")
    if orders not in PAIR_ORDERS:
        raise ValueError(f"pair orders {orders!r}; choose both (2 passes a comparison) or one (1)")
    n, per = n_candidates, 2 if orders == "both" else 1
    comparisons = {"full": n * (n - 1) // 2, "swiss": n // 2, "top_k": n}.get(scheme, n - 1)
    return per * min(comparisons, n * (n - 1) // 2)


@dataclass
class SchemeResult:
    """Per example, [n] scores (higher is better) and the forward passes that were run."""

    scores: list[np.ndarray]
    passes: list[int]


def rank_with_scheme(
    scheme: str,
    n_candidates: Sequence[int],
    pair_logits: PairLogits,
    budget: int | None = None,
    orders: str = "both",
    seed: int = 0,
    references: Sequence[Sequence[int]] | None = None,
) -> SchemeResult:
    """Rank every example's candidates with a budgeted scheme, all examples in lockstep.

    Each step gathers the passes every example's scheme asks for into one `pair_logits` call (so a ranker
    batches them); a pass asked for twice runs once, and no example runs more than `budget` passes.

    Args:
        scheme: one of `SCHEMES` (full, bubble, knockout, swiss, reference, top_k).
        n_candidates: candidates per example.
        pair_logits: runs passes; see `PairLogits`.
        budget: forward passes per example the scheme may use; None: its smallest (`min_passes`).
        orders: "both" (a comparison is 2 passes, both orders) or "one" (1 pass).
        seed: example e draws its random orders from `np.random.default_rng([seed, e])`.
        references: per example, candidates to take as references first (reference, top_k), e.g. the best
            model's answer; the rest follow in random order.
    Returns:
        The scores and the passes each example ran.

    Example: with M[i, j] = v_i − v_j, v = [0, 3, 1, 2], scheme "reference" with references [[0]] and the
    smallest budget (6 passes) scores each candidate by M[i,0] − M[0,i] = 2(v_i − v_0): [0, 6, 2, 4].
    """
    ledgers, steps, requests, scores = [], [], {}, {}
    for e, n in enumerate(n_candidates):
        smallest = min_passes(scheme, n, orders)
        limit = smallest if budget is None else int(budget)
        if limit < smallest:
            raise ValueError(
                f"a budget of {budget} passes is below the {smallest} that {scheme} needs for {n} candidates "
                f"({orders} orders)"
            )
        rng = np.random.default_rng([seed, e])
        ledgers.append(PassLedger(n, limit, orders, rng))
        preferred = list(references[e]) if references is not None else []
        steps.append(SCHEMES[scheme](n, ledgers[-1], rng, preferred))

    def advance(e: int, logits: np.ndarray | None) -> None:
        try:
            requests[e] = steps[e].send(logits)
        except StopIteration as done:
            requests.pop(e, None)
            scores[e] = np.asarray(done.value, dtype=np.float64)

    for e in range(len(steps)):
        advance(e, None)
    while requests:
        triples = [(e, a, b) for e, request in requests.items() for a, b in request]
        logits = np.asarray(pair_logits(triples), dtype=np.float64)
        start = 0
        for e, request in list(requests.items()):
            advance(e, logits[start : start + len(request)])
            start += len(request)
    passes = [len(ledger.logits) for ledger in ledgers]
    return SchemeResult([scores[e] for e in range(len(steps))], passes)


def replay_scheme(
    matrices: Sequence[np.ndarray],
    scheme: str,
    budget: int | None = None,
    orders: str = "both",
    seed: int = 0,
    references: Sequence[Sequence[int]] | None = None,
) -> SchemeResult:
    """`rank_with_scheme` read off saved full matrices: the same picks as running it online on the same
    examples in the same order (each pass's logit is the matrix entry it would have computed)."""
    return rank_with_scheme(
        scheme,
        [len(m) for m in matrices],
        lambda triples: np.array([matrices[e][a, b] for e, a, b in triples], dtype=np.float64),
        budget,
        orders,
        seed,
        references,
    )
