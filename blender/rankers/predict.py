"""Run a PairRanker over many pairs: full N×N matrices and online bubble runs.

Pairs from every example go into one pool, are sorted by length and cut into batches under a token budget,
so little compute goes to padding; each pair's ids are fixed by `PairEncoder`, so a score does not depend
on the batch it lands in.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from blender.aggregation import bubble_runs, one_order_matrix, pair_orders
from blender.devices import resolve_precision
from blender.rankers.encoding import EncodedTexts
from blender.rankers.precision import AUTOCAST_DTYPES, PRECISIONS, autocast_for, model_for_precision
from blender.ranking_schemes import SchemeResult, rank_with_scheme
from blender.records import Record
from blender.settings import check_types, require_choice, require_positive

if TYPE_CHECKING:  # the pairwise models import this module for its batching
    from blender.rankers.pairranker import PairRanker

log = logging.getLogger(__name__)


@dataclass
class InferenceSettings:
    """How pairs are batched and run.

    Attributes:
        max_tokens: padded tokens per batch (batch rows × longest row).
        max_batch_size: rows per batch at most.
        precision: "fp32"; "bf16" or "fp16" autocast on the ranker's device (bf16 was ~1.7x faster than fp32 on
            an AMD EPYC with AVX512-BF16, and 2.7x slower on a Xeon without it); "auto", bf16 where the device
            computes it natively, else fp32; or "int8", a dynamically quantized copy of the encoder (CPU;
            PairRanker only). See `blender.rankers.precision`.
        show_progress: draw a progress bar.
    """

    CONFIG_KEY: ClassVar[str] = "inference"

    max_tokens: int = 16384
    max_batch_size: int = 64
    precision: str = "auto"
    show_progress: bool = True

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "max_tokens", "max_batch_size")
        require_choice(self, "precision", PRECISIONS)


def encode_records(ranker: PairRanker, records: Sequence[Record]) -> list[EncodedTexts]:
    """Tokenize every record's source and candidates once."""
    encoder = ranker.encoder
    # The encoder joins instruction and input its own way (PairRM's layouts: with no separator, as trained).
    return [
        encoder.encode_record_texts(encoder.record_source(r), [c.text for c in r.candidates]) for r in records
    ]


def length_sorted_batches(lengths: Sequence[int], max_tokens: int, max_batch_size: int) -> list[list[int]]:
    """Group indices, longest first, into batches whose padded size stays under `max_tokens`."""
    order = sorted(range(len(lengths)), key=lambda k: -lengths[k])
    batches: list[list[int]] = []
    current: list[int] = []
    for k in order:
        # Sorted longest first, so the batch's first row sets its padded width.
        width = lengths[current[0]] if current else lengths[k]
        if current and ((len(current) + 1) * width > max_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(k)
    if current:
        batches.append(current)
    return batches


def autocast_context(device: torch.device, mixed_precision: str) -> contextlib.AbstractContextManager:
    """Autocast for a float precision: "no" or "fp32" (none), "bf16", "fp16", "auto" (bf16 where `device` has it
    natively, else none). int8 is not an autocast: it runs a
    quantized copy of the model, which only PairRanker inference makes (`score_pairs`)."""
    mixed_precision = resolve_precision(mixed_precision, device)
    if mixed_precision in ("no", "fp32"):
        return contextlib.nullcontext()
    if mixed_precision == "int8":
        raise ValueError(
            "precision int8 is implemented for PairRanker inference only; use fp32, bf16 or fp16"
        )
    if mixed_precision not in AUTOCAST_DTYPES:
        raise ValueError(f"mixed_precision={mixed_precision!r}; choose no, bf16 or fp16")
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[mixed_precision])


@torch.inference_mode()
def score_pairs(
    ranker: PairRanker,
    encoded: Sequence[EncodedTexts],
    triples: Sequence[tuple[int, int, int]],
    settings: InferenceSettings | None = None,
    description: str = "pairs",
) -> np.ndarray:
    """Pair logits for (example, first, second) triples.

    Args:
        ranker: the model (its device is used).
        encoded: per example, its tokenized texts.
        triples: (example index, first candidate, second candidate).
        settings: batching and precision.
        description: progress bar label.
    Returns:
        [len(triples)] logits, > 0 when the first candidate is judged better.
    """
    settings = settings or InferenceSettings()
    was_training = ranker.training
    ranker.eval()
    device = next(ranker.parameters()).device
    model = model_for_precision(ranker, settings.precision)  # int8: the quantized copy (made once)
    sequences = [ranker.encoder.pair_ids(encoded[e], a, b) for e, a, b in triples]
    batches = length_sorted_batches([len(s) for s in sequences], settings.max_tokens, settings.max_batch_size)
    logits = np.empty(len(triples), dtype=np.float64)
    bar = tqdm(
        total=len(triples), desc=description, unit="pair", disable=not settings.show_progress, leave=False
    )
    with autocast_for(device, settings.precision):
        for batch in batches:
            inputs = ranker.encoder.pad([sequences[k] for k in batch])
            out = model.pair_logits(inputs["input_ids"].to(device), inputs["attention_mask"].to(device))
            logits[batch] = out.float().cpu().numpy()
            bar.update(len(batch))
    bar.close()
    ranker.train(was_training)
    return logits


def full_matrices(
    ranker: PairRanker,
    records: Sequence[Record],
    settings: InferenceSettings | None = None,
    orders: str = "both",
) -> list[np.ndarray]:
    """The N×N logit matrix of every record.

    Args:
        orders: "both" runs both orders of every pair, N(N−1) forward passes (the paper); "one" runs one
            balanced order of each pair (`blender.aggregation.pair_orders`), half the passes, shuffled per
            record by a seed from its id (so the same record always gets the same passes), and fills the
            other order as its negation (`one_order_matrix`).
    Returns:
        Per record, [n, n] with M[i, j] the logit of (i as candidate1, j as candidate2) and M[i, i] = 0.
    """
    encoded = encode_records(ranker, records)
    seeds = [orientation_seed(r.id) if orders == "one" else None for r in records]
    triples = [
        (e, i, j) for e, r in enumerate(records) for i, j in pair_orders(len(r.candidates), orders, seeds[e])
    ]
    logits = score_pairs(ranker, encoded, triples, settings, description="full matrix")
    matrices = [np.zeros((len(r.candidates), len(r.candidates))) for r in records]
    for (e, i, j), value in zip(triples, logits, strict=True):
        matrices[e][i, j] = value
    return (
        matrices
        if orders == "both"
        else [one_order_matrix(m, seed) for m, seed in zip(matrices, seeds, strict=True)]
    )


def orientation_seed(record_id: str) -> int:
    """A record's own seed for shuffling its one-order passes: fixed by its id, independent of the batch."""
    return int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:8], "little")


def bubble_scores_online(
    ranker: PairRanker,
    records: Sequence[Record],
    settings: InferenceSettings | None = None,
    n_runs: int = 1,
    seed: int = 0,
    skip: Sequence[int] = (),
) -> list[np.ndarray]:
    """Bubble runs that only compute the comparisons they need: 2(N−1) forward passes per run.

    Args:
        skip: candidate counts of the records before these in a larger set (see `bubble_runs`).
    Returns:
        Per record, [n] scores (final position; the highest is the pick).
    """
    settings = settings or InferenceSettings()
    quiet = replace(settings, show_progress=False)
    encoded = encode_records(ranker, records)

    def compare(triples: list[tuple[int, int, int]]) -> np.ndarray:
        both = [*triples, *[(e, b, a) for e, a, b in triples]]
        logits = score_pairs(ranker, encoded, both, quiet)
        return logits[: len(triples)] - logits[len(triples) :]

    return bubble_runs([len(r.candidates) for r in records], compare, n_runs=n_runs, seed=seed, skip=skip)


def run_batches(
    sequences: Sequence[list[int]],
    pad: Callable[[Sequence[list[int]]], dict[str, torch.Tensor]],
    step: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    settings: InferenceSettings,
    device: torch.device,
    description: str,
) -> np.ndarray:
    """Run `step(batch) -> [rows]` over length-sorted batches of `sequences`; values in input order."""
    batches = length_sorted_batches([len(s) for s in sequences], settings.max_tokens, settings.max_batch_size)
    out = np.empty(len(sequences), dtype=np.float64)
    bar = tqdm(total=len(sequences), desc=description, disable=not settings.show_progress, leave=False)
    with torch.inference_mode(), autocast_context(device, settings.precision):
        for batch in batches:
            inputs = {k: v.to(device) for k, v in pad([sequences[k] for k in batch]).items()}
            out[batch] = step(inputs).float().cpu().numpy()
            bar.update(len(batch))
    bar.close()
    return out


def split_by_record(values: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    """Cut a flat array of per-candidate values into one array per record."""
    return [np.asarray(part) for part in np.split(values, np.cumsum(counts)[:-1])]


def scheme_scores_online(
    ranker: PairRanker,
    records: Sequence[Record],
    scheme: str,
    budget: int | None = None,
    orders: str = "both",
    settings: InferenceSettings | None = None,
    seed: int = 0,
    references: Sequence[Sequence[int]] | None = None,
) -> SchemeResult:
    """Rank with a budgeted scheme (`blender.ranking_schemes`), running only the passes it asks for: each step's
    passes of every record go through the model as one length-sorted pool.

    Args:
        scheme: full, bubble, knockout, swiss, reference or top_k.
        budget: forward passes per record at most (None: the scheme's smallest).
        orders: "both" (2 passes a comparison) or "one".
        references: per record, candidates to try first as references (reference, top_k).
    Returns:
        Per record, [n] scores and the passes run.
    """
    settings = settings or InferenceSettings()
    quiet = replace(settings, show_progress=False)
    encoded = encode_records(ranker, records)
    return rank_with_scheme(
        scheme,
        [len(r.candidates) for r in records],
        lambda triples: score_pairs(ranker, encoded, triples, quiet),
        budget,
        orders,
        seed,
        references,
    )
