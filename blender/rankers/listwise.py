"""A listwise cross-encoder: each candidate read once with its source, trained on all of an instruction's pairs.

Not in the paper (issue 22). PairRanker reads `[source; candidate_i; candidate_j]` and learns from the
pairs it draws (5 per instruction); inference costs N(N−1) passes (MaxLogits). This ranker reads `[source;
candidate]` once per candidate, as SummaReranker does, and a head on concat(mean(source), mean(candidate))
(PairRanker's head and pooling, one candidate) gives one score per task. Training puts all N candidates of an
instruction through the encoder at once and takes a loss over their N scores: PairRanker's logistic loss over
all C(N, 2) pairs (ties within min_delta left out; `loss: pairwise`), or ListNet's softmax cross-entropy
(`loss: listnet`). For the encoder cost of N/2 pair passes it learns from C(N, 2) comparisons (55 for 11
candidates); inference is N passes per instruction.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from blender.rankers.backbone import encoder_ranker_builder
from blender.rankers.checkpoint import load_weights, read_checkpoint, write_checkpoint
from blender.rankers.encoding import EncodedTexts, PairEncoder
from blender.rankers.losses import (
    ALL_PAIRS_WEIGHTINGS,
    all_pairs_logistic_loss,
    bradley_terry_loss,
    listnet_loss,
)
from blender.rankers.pairranker import POOLINGS, prepare_backbone
from blender.rankers.registry import RankerKind, TrainingPlan
from blender.rankers.summareranker import SummaReranker
from blender.records import Candidate, Record, RecordError, per_signal, signal_matrix

LISTWISE_LOSSES = ("pairwise", "bradley_terry", "listnet")
# The model name the reference answer trains under when `reference_signal` adds it as a candidate.
REFERENCE_MODEL = "<reference>"


class ListwiseRanker(nn.Module):
    """Cross-encoder over `[source; candidate]`: one score per task for each candidate, read on its own.

    Args:
        backbone: a Hugging Face encoder returning `last_hidden_state`.
        tokenizer: its tokenizer; PairRanker's marker tokens are added (`<|source|>`, and `<|candidate1|>`
            marks the one candidate), so the input layout is SummaReranker's.
        task_names: one output per training signal; the ranking score is their mean.
        dropout: dropout in the head.
        source_max_length: source budget in tokens.
        candidate_max_length: candidate budget in tokens.
        truncation: "head" or "head_tail" (see `PairEncoder`).
        length_hint: start each candidate with "(N words)", its whole length (see `PairEncoder`).
        pooling: "mean" (the mean over each part's tokens, as MiniLM and mpnet were trained to pool) or "marker"
            (the hidden state at each part's marker token).
    """

    label = "Listwise"

    def __init__(
        self,
        backbone: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        task_names: Sequence[str] = ("quality",),
        dropout: float = 0.05,
        source_max_length: int = 64,
        candidate_max_length: int = 448,
        truncation: str = "head",
        length_hint: bool = False,
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        if not task_names:
            raise ValueError("the listwise ranker needs at least one task (training signal)")
        if pooling not in POOLINGS:
            raise ValueError(f"ranker.pooling={pooling!r} is not one of {POOLINGS}")
        prepare_backbone(backbone, tokenizer)
        self.backbone, self.tokenizer = backbone, tokenizer
        self.task_names, self.dropout, self.pooling = list(task_names), dropout, pooling
        self.encoder = PairEncoder(
            tokenizer, source_max_length, candidate_max_length, truncation, length_hint
        )
        hidden = backbone.config.hidden_size
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * hidden, hidden),
            nn.Tanh(),
            nn.Dropout(dropout),
            nn.Linear(hidden, len(self.task_names)),
        )

    # The input layout, the scoring and the cost are SummaReranker's: one `[source; candidate]` sequence per
    # candidate, `[CLS]<|source|>x[SEP][CLS]<|candidate1|>y[SEP]` for BERT; only the pooling and the loss differ.
    candidate_ids = SummaReranker.candidate_ids
    score_records = SummaReranker.score_records
    forward_passes = SummaReranker.forward_passes

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """[batch, n_tasks] scores, one row per `[source; candidate]` sequence."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        markers = (self.encoder.source_id, self.encoder.candidate1_id)
        if self.pooling == "mean":
            # Part k runs from its marker to the next one (the wrapping tokens in between count with the part
            # before), as PairRanker's mean pooling; padding counts with none.
            is_marker = sum(input_ids == marker for marker in markers)
            part = torch.cumsum(is_marker, dim=1) * attention_mask
            masks = [(part == k).unsqueeze(-1).to(hidden.dtype) for k in (1, 2)]
            source, candidate = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0) for mask in masks)
        else:
            rows = torch.arange(input_ids.shape[0], device=input_ids.device)
            source, candidate = (hidden[rows, (input_ids == m).int().argmax(dim=1)] for m in markers)
        return self.head(torch.cat([source, candidate], dim=-1))

    def settings(self) -> dict:
        return {
            "task_names": self.task_names,
            "dropout": self.dropout,
            "source_max_length": self.encoder.source_max_length,
            "candidate_max_length": self.encoder.candidate_max_length,
            "truncation": self.encoder.truncation,
            "length_hint": self.encoder.length_hint,
            "pooling": self.pooling,
        }

    def save(self, directory: str | os.PathLike) -> None:
        write_checkpoint(self, self.backbone, self.tokenizer, directory, "listwise", self.settings())

    @classmethod
    def load(cls, directory: str | os.PathLike, map_location: str = "cpu") -> ListwiseRanker:
        settings, backbone, tokenizer = read_checkpoint(directory, "listwise")
        return load_weights(cls(backbone, tokenizer, **settings), directory, map_location).eval()


# ---- training: every candidate of an instruction, one loss over their scores ------------------------------


@dataclass
class ListwiseSampling:
    """How the listwise ranker trains (`ranker.sampling` in conf/ranker/listwise.yaml).

    Attributes:
        loss: "pairwise" (logistic loss over all C(N, 2) pairs, PairRanker's on every pair at once),
            "bradley_terry" (every pair's BCE against the soft target σ(Δ signal / temperature); no ties) or
            "listnet" (softmax cross-entropy against softmax(signal / temperature)).
        weighting: for "pairwise": "uniform" (each decisive pair alike), "delta" (weighed by its signal gap) or
            "lambda" (LambdaRank's |ΔDCG| under the current scores: pairs at the top of the ranking count most).
        temperature: for "listnet" and "bradley_terry", in signal units (bradley_terry with the logit transform:
            1 is the judge's own scale).
        signal_transform: as PairRanker's (see `signal_matrix`); one name or {signal: name}.
        min_delta: for "pairwise", signal gaps at or below this are ties (no loss); one or {signal: threshold}.
        candidates_per_instruction: train on this many of each instruction's candidates, drawn anew each epoch
            (C(k, 2) pairs for k passes); null: all of them. A CPU budget knob: 6 of 11 halves the encoder cost
            and keeps 15 of the 55 pairs.
        reference_signal: train on each instruction's reference answer (`output`) as one more candidate, with
            this signal (its raw score, before `signal_transform`; one, or {signal: value}); null: not. For
            gpt4_pref, 0.5: each candidate's gpt4_pref is the judge's P(it beats the reference), so the reference
            is on par with itself and its pairs with the candidates are the judge's own comparisons, not ones
            derived from two scores. Training only: nothing at inference reads the reference.
    """

    loss: str = "pairwise"
    weighting: str = "uniform"
    temperature: float = 0.1
    signal_transform: str | dict[str, str] = "none"
    min_delta: float | dict[str, float] = 0.1
    candidates_per_instruction: int | None = None
    reference_signal: float | dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.candidates_per_instruction is not None and self.candidates_per_instruction < 2:
            raise ValueError(
                f"ranker.sampling.candidates_per_instruction={self.candidates_per_instruction!r}; it takes 2 or "
                "more (a pair), or null for all"
            )
        if self.loss not in LISTWISE_LOSSES:
            raise ValueError(
                f"ranker.sampling.loss={self.loss!r}; choose one of {', '.join(LISTWISE_LOSSES)}"
            )
        if self.weighting not in ALL_PAIRS_WEIGHTINGS:
            raise ValueError(
                f"ranker.sampling.weighting={self.weighting!r}; choose one of {', '.join(ALL_PAIRS_WEIGHTINGS)}"
            )
        if not self.temperature > 0:
            raise ValueError(f"ranker.sampling.temperature={self.temperature!r}; it must be above 0")
        values = (
            self.reference_signal.values()
            if isinstance(self.reference_signal, Mapping)
            else [self.reference_signal]
        )
        for value in values:
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(
                    f"ranker.sampling.reference_signal={self.reference_signal!r}; give a number (the reference "
                    "answer's score, e.g. 0.5 for gpt4_pref), a {signal: number} mapping, or null"
                )


class ListwiseBatches(Sequence):
    """One epoch: instructions shuffled, `per_batch` at a time with their candidates (all, or `per_instruction`
    drawn for the epoch); instructions of equal candidate counts share a batch, so scores reshape to
    [instructions, n, n_tasks]."""

    def __init__(
        self,
        ranker: ListwiseRanker,
        encoded: Sequence[EncodedTexts],
        signals: Sequence[np.ndarray],
        per_batch: int,
        seed: int,
        per_instruction: int | None = None,
        last_is_reference: bool = False,
    ):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(encoded))
        self.chosen = [
            sorted(rng.choice(n, per_instruction, replace=False).tolist())
            if per_instruction is not None and per_instruction < n
            else list(range(n))
            for n in (len(e.candidates) for e in encoded)
        ]
        by_count: dict[int, list[int]] = {}
        for e in order:
            by_count.setdefault(len(self.chosen[e]), []).append(int(e))
        batches = [g[k : k + per_batch] for g in by_count.values() for k in range(0, len(g), per_batch)]
        self.batches = [batches[k] for k in np.random.default_rng(seed + 1).permutation(len(batches))]
        self.ranker, self.encoded, self.signals = ranker, encoded, signals
        self.last_is_reference = last_is_reference

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rows = self.batches[index]
        sequences = [self.ranker.candidate_ids(self.encoded[e], k) for e in rows for k in self.chosen[e]]
        batch = self.ranker.encoder.pad(sequences)
        signal = np.stack([self.signals[e][self.chosen[e]] for e in rows])
        batch["signal"] = torch.tensor(signal, dtype=torch.float32)
        if self.last_is_reference:
            # Which rows are the reference answer (trained on, never a pick): the last candidate, when drawn.
            batch["is_reference"] = torch.tensor(
                [[k == len(self.encoded[e].candidates) - 1 for k in self.chosen[e]] for e in rows]
            )
        return batch


def listwise_loss(
    model: ListwiseRanker, batch: dict[str, Tensor], sampling: ListwiseSampling, min_delta: Sequence[float]
) -> tuple[Tensor, dict[str, float]]:
    """The kind's loss on one batch, and the share of instructions whose pick holds the best signal."""
    signal = batch["signal"]  # [instructions, n, n_tasks]
    scores = model(batch["input_ids"], batch["attention_mask"]).view(signal.shape)
    if sampling.loss == "listnet":
        loss = listnet_loss(scores, signal, sampling.temperature)
    elif sampling.loss == "bradley_terry":
        loss = bradley_terry_loss(scores, signal, sampling.temperature)
    else:
        threshold = torch.tensor(list(min_delta), dtype=signal.dtype, device=signal.device)
        loss = all_pairs_logistic_loss(scores.float(), signal, threshold, sampling.weighting)
    mean_signal, mean_score = signal.mean(-1), scores.detach().mean(-1)
    if "is_reference" in batch:
        mean_signal = mean_signal.masked_fill(batch["is_reference"], float("-inf"))
        mean_score = mean_score.masked_fill(batch["is_reference"], float("-inf"))
    picked = mean_signal.gather(1, mean_score.argmax(1, keepdim=True)).squeeze(1)
    return loss, {"pick_is_best": (picked >= mean_signal.max(1).values).float().mean().item()}


def prepare_listwise_training(
    ranker: ListwiseRanker,
    records: Sequence[Record],
    signals: Sequence[str],
    sampling: ListwiseSampling,
    batch_size: int,
    seed: int,
) -> TrainingPlan:
    """`batch_size` counts `[source; candidate]` sequences: a batch holds batch_size // N instructions (at least
    one) with the N candidates each trains on (all, or `sampling.candidates_per_instruction`)."""
    with_reference = sampling.reference_signal is not None
    if with_reference:
        records = [with_reference_candidate(r, signals, sampling.reference_signal) for r in records]
    signal_by_record = [signal_matrix(r, signals, sampling.signal_transform) for r in records]
    min_delta = per_signal(sampling.min_delta, signals, "min_delta")
    encoded = [ranker.encoder.encode_record_texts(r.source, [c.text for c in r.candidates]) for r in records]
    n_candidates = max((len(r.candidates) for r in records), default=1)
    k = sampling.candidates_per_instruction
    if k is not None:
        n_candidates = min(n_candidates, k)
    per_batch = max(1, batch_size // n_candidates)
    cache: dict[int, ListwiseBatches] = {}

    def epoch_batches(epoch: int) -> ListwiseBatches:
        if epoch not in cache:
            cache.clear()
            cache[epoch] = ListwiseBatches(
                ranker,
                encoded,
                signal_by_record,
                per_batch,
                seed=seed + epoch,
                per_instruction=k,
                last_is_reference=with_reference,
            )
        return cache[epoch]

    n_pairs = sum(len(c) * (len(c) - 1) // 2 for c in epoch_batches(0).chosen)
    description = (
        f"Listwise ({sampling.loss}): {len(records)} instructions x all candidates per epoch ({n_pairs} pairs), "
        f"{per_batch} instructions a batch"
        + (", each with its reference answer as one more candidate" if with_reference else "")
    )
    if sampling.loss == "pairwise":
        # Tied pairs carry no loss. An instruction with none decisive still takes its step (the measured recipe
        # trains so: docs/results/pairranker.md); with none decisive anywhere there is nothing to train.
        decisive = [decisive_pairs(s, min_delta) for s in signal_by_record]
        description += (
            f"; {sum(decisive)} decisive pairs, {decisive.count(0)} instructions with none (zero-loss steps)"
        )
        if not any(decisive):
            return TrainingPlan(lambda epoch: [], lambda model, batch: None, description)
    return TrainingPlan(
        epoch_batches, lambda model, batch: listwise_loss(model, batch, sampling, min_delta), description
    )


def with_reference_candidate(record: Record, signals: Sequence[str], value: float | Mapping) -> Record:
    """The record with its reference answer appended as a candidate scoring `value` on each signal."""
    if not record.output.strip():
        raise RecordError(
            f"record {record.id!r} has an empty reference answer (`output`), and "
            "ranker.sampling.reference_signal trains on it; set reference_signal=null or fix the record"
        )
    scores = dict(zip(signals, per_signal(value, signals, "ranker.sampling.reference_signal"), strict=True))
    reference = Candidate(model=REFERENCE_MODEL, text=record.output, scores=scores)
    return replace(record, candidates=[*record.candidates, reference])


def decisive_pairs(signal: np.ndarray, min_delta: Sequence[float]) -> int:
    """Unordered candidate pairs whose signal gap exceeds its task's `min_delta` on some task ([n, n_tasks])."""
    gaps = np.abs(signal[:, None, :] - signal[None, :, :]) > np.asarray(min_delta, dtype=float)
    return int(np.triu(gaps.any(-1), k=1).sum())


KIND = RankerKind(
    name="listwise",
    model=ListwiseRanker,
    build=encoder_ranker_builder(ListwiseRanker),
    pairwise=False,
    sampling=ListwiseSampling,
    prepare_training=prepare_listwise_training,
    new_parameter_prefixes=("head.",),
)

__all__ = [
    "KIND",
    "LISTWISE_LOSSES",
    "ListwiseRanker",
    "ListwiseSampling",
    "listwise_loss",
    "prepare_listwise_training",
]
