"""What `Blender`'s methods compute, as plain functions of a ranker: candidate scores, pair margins in each
compare mode, best-/worst-of-n orders. `blender.api.Blender` wraps them with llm-blender's signatures."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from blender.aggregation import bubble_runs, get_aggregation
from blender.rankers.pairranker import PairRanker
from blender.rankers.predict import InferenceSettings, encode_records, full_matrices, score_pairs
from blender.rankers.registry import Ranker, kind_of
from blender.records import Candidate, Record

COMPARE_MODES = ("[A,B]+[B,A]", "[A,B]", "[B,A]")
REFERENCE_MODES = ("longest", "shortest", "median_length", "first", "last")
SELECTIONS = ("bubble", "full")


def as_records(
    instructions: Sequence[str],
    candidates: Sequence[Sequence[str]],
    inputs: Sequence[str] | None,
    min_candidates: int = 2,
) -> list[Record]:
    """Records from parallel lists, checked: one instruction (and input) per candidate list."""
    if isinstance(instructions, str):
        raise TypeError("instructions must be a list of strings, one per example (got one string)")
    if len(instructions) != len(candidates):
        raise ValueError(f"{len(instructions)} instructions but {len(candidates)} candidate lists")
    if inputs is not None and len(inputs) != len(instructions):
        raise ValueError(f"{len(instructions)} instructions but {len(inputs)} inputs")
    records = []
    for k, (instruction, texts) in enumerate(zip(instructions, candidates, strict=True)):
        if isinstance(texts, str) or len(texts) < min_candidates:
            raise ValueError(
                f"instruction {k}: need a list of at least {min_candidates} candidates, got {texts!r:.80}"
            )
        records.append(
            Record(
                id=str(k),
                instruction=instruction,
                input=inputs[k] if inputs is not None else "",
                output="",
                candidates=[Candidate(model=f"candidate_{i}", text=t) for i, t in enumerate(texts)],
            )
        )
    return records


def reference_text(texts: Sequence[str], mode: str) -> str:
    """The reference candidate of `rank_with_ref` by mode (lengths in characters, as llm-blender)."""
    if mode == "longest":
        return max(texts, key=len)
    if mode == "shortest":
        return min(texts, key=len)
    if mode == "median_length":
        return sorted(texts, key=len)[len(texts) // 2]
    if mode == "first":
        return texts[0]
    if mode == "last":
        return texts[-1]
    raise ValueError(f"ref_mode={mode!r}; choose one of {list(REFERENCE_MODES)} or give ref_candidates")


def with_reference(records: Sequence[Record], references: Sequence[str]) -> list[Record]:
    """Each record with its reference appended as one more candidate (index n)."""
    return [
        dataclasses.replace(r, candidates=[*r.candidates, Candidate(model="reference", text=ref)])
        for r, ref in zip(records, references, strict=True)
    ]


def candidate_scores(
    ranker: Ranker, records: Sequence[Record], aggregation: str, seed: int, settings: InferenceSettings
) -> list[np.ndarray]:
    """Per record, [n] candidate scores, higher is better. A PairRanker's "max_logits" scores are
    llm-blender's: the row mean of M − Mᵀ, diagonal included (the same ranks as the sum)."""
    if not kind_of(ranker).pairwise:
        return ranker.score_records(records, settings)
    if aggregation == "bubble":
        return bubble_positions(ranker, records, settings, seed)
    aggregate = get_aggregation(aggregation)
    scores = [aggregate(m) for m in full_matrices(ranker, records, settings)]
    return [s / len(s) for s in scores] if aggregation == "max_logits" else scores


def bubble_positions(
    ranker: PairRanker, records: Sequence[Record], settings: InferenceSettings, seed: int, worst: bool = False
) -> list[np.ndarray]:
    """One online bubble run per record (2(N−1) passes): final positions, the pick (best or worst) last."""
    encoded = encode_records(ranker, records)
    quiet = dataclasses.replace(settings, show_progress=False)
    sign = -1.0 if worst else 1.0

    def compare(triples: list[tuple[int, int, int]]) -> np.ndarray:
        both = [*triples, *[(e, b, a) for e, a, b in triples]]
        logits = score_pairs(ranker, encoded, both, quiet)
        return sign * (logits[: len(triples)] - logits[len(triples) :])

    return bubble_runs([len(r.candidates) for r in records], compare, n_runs=1, seed=seed)


def pair_margins(
    ranker: Ranker,
    records: Sequence[Record],
    pairs: Sequence[tuple[int, int, int]],
    mode: str,
    settings: InferenceSettings,
) -> np.ndarray:
    """For (record, a, b) triples, how much better a is than b in a compare mode (> 0: a is better).

    "[A,B]+[B,A]" is llm-blender's s_A − s_B with s the row mean of M − Mᵀ over [a, b], which is
    M[a,b] − M[b,a]; "[A,B]" is M[a,b]; "[B,A]" is −M[b,a]. A pointwise ranker gives s_a − s_b in every mode.
    """
    if mode not in COMPARE_MODES:
        raise ValueError(f"mode={mode!r}; choose one of {list(COMPARE_MODES)}")
    if not kind_of(ranker).pairwise:
        scores = ranker.score_records(records, settings)
        return np.array([scores[e][a] - scores[e][b] for e, a, b in pairs])
    encoded = encode_records(ranker, records)
    pairs = list(pairs)
    if mode == "[A,B]":
        return score_pairs(ranker, encoded, pairs, settings)
    swapped = [(e, b, a) for e, a, b in pairs]
    if mode == "[B,A]":
        return -score_pairs(ranker, encoded, swapped, settings)
    logits = score_pairs(ranker, encoded, [*pairs, *swapped], settings)
    return logits[: len(pairs)] - logits[len(pairs) :]


def selection_orders(
    ranker: Ranker,
    records: Sequence[Record],
    pairrm_cmp_type: str,
    seed: int,
    settings: InferenceSettings,
    worst: bool = False,
) -> list[list[int]]:
    """Per record, its candidate indices with the pick (best, or worst) first.

    "full" orders all candidates by MaxLogits (a pointwise ranker: by its scores). "bubble" runs one bubble
    pass and gives the pick, then the others in the order they lost in (as llm-blender; only the pick is
    ranked). A record with one candidate is [0].
    """
    if pairrm_cmp_type not in SELECTIONS:
        raise ValueError(f"pairrm_cmp_type={pairrm_cmp_type!r}; choose one of {list(SELECTIONS)}")
    orders = [[0] for _ in records]
    ranked = [k for k, r in enumerate(records) if len(r.candidates) > 1]
    if not ranked:
        return orders
    subset = [records[k] for k in ranked]
    if kind_of(ranker).pairwise and pairrm_cmp_type == "bubble":
        for k, position in zip(ranked, bubble_positions(ranker, subset, settings, seed, worst), strict=True):
            by_position = [int(i) for i in np.argsort(position, kind="stable")]
            orders[k] = [by_position[-1], *by_position[:-1]]
    else:
        for k, s in zip(ranked, candidate_scores(ranker, subset, "max_logits", seed, settings), strict=True):
            s = np.asarray(s, dtype=float)
            orders[k] = [int(i) for i in np.argsort(s if worst else -s, kind="stable")]
    return orders
