"""SummaReranker (Ravaut et al. 2022), one of the paper's baselines, in the pointwise form the paper uses.

A cross-encoder reads `[source; candidate]` and a head gives one logit per task (training signal); the ranking
score is the mean over tasks, N forward passes per instruction. The original's shared bottom and mixture of
experts are replaced by PairRanker's head shape (Dropout → Linear H→H → Tanh → Dropout → Linear H→n_tasks), read
at the first token ([CLS]) as the original reads it.

Training (the original's `MoE_BCE` with `top_bottom` sub-sampling, num_pos 1, num_neg 1; PAPER.md §8 item 6): per
instruction, the num_pos best and num_neg worst candidates go through the model; each is a positive on a task
when it holds the instruction's best signal on that task.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from blender.rankers.backbone import encoder_ranker_builder
from blender.rankers.checkpoint import load_weights, read_checkpoint, write_checkpoint
from blender.rankers.encoding import EncodedTexts, PairEncoder
from blender.rankers.losses import summareranker_bce_loss
from blender.rankers.pairranker import prepare_backbone
from blender.rankers.predict import InferenceSettings, run_batches, split_by_record
from blender.rankers.registry import RankerKind, TrainingPlan
from blender.records import Record, per_signal, signal_matrix


class SummaReranker(nn.Module):
    """Pointwise cross-encoder over `[source; candidate]`, one logit per task.

    Args:
        backbone: a Hugging Face encoder returning `last_hidden_state`.
        tokenizer: its tokenizer; PairRanker's marker tokens are added (`<|source|>`, and `<|candidate1|>`
            marks the one candidate), so both rankers read the same input layout.
        task_names: one output per training signal.
        dropout: dropout in the head.
        source_max_length: source budget in tokens.
        candidate_max_length: candidate budget in tokens.
        truncation: "head" or "head_tail" (see `PairEncoder`).
        length_hint: start each candidate with "(N words)", its whole length (see `PairEncoder`).
    """

    label = "SummaReranker"

    def __init__(
        self,
        backbone: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        task_names: Sequence[str] = ("quality",),
        dropout: float = 0.05,
        source_max_length: int = 128,
        candidate_max_length: int = 128,
        truncation: str = "head",
        length_hint: bool = False,
    ) -> None:
        super().__init__()
        if not task_names:
            raise ValueError("SummaReranker needs at least one task (training signal)")
        prepare_backbone(backbone, tokenizer)
        self.backbone, self.tokenizer = backbone, tokenizer
        self.task_names, self.dropout = list(task_names), dropout
        self.encoder = PairEncoder(
            tokenizer, source_max_length, candidate_max_length, truncation, length_hint
        )
        hidden = backbone.config.hidden_size
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Dropout(dropout),
            nn.Linear(hidden, len(self.task_names)),
        )

    def candidate_ids(self, encoded: EncodedTexts, candidate: int) -> list[int]:
        """Input ids of `[source; candidate]`: `[CLS]<|source|>x[SEP][CLS]<|candidate1|>y[SEP]` for BERT."""
        e = self.encoder
        return [
            *e.prefix,
            e.source_id,
            *encoded.source,
            *e.suffix,
            *e.prefix,
            e.candidate1_id,
            *encoded.candidates[candidate],
            *e.suffix,
        ]

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """[batch, n_tasks] logits, one per task, read at the first token."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden[:, 0])

    def score_records(self, records: Sequence[Record], settings: InferenceSettings) -> list[np.ndarray]:
        encoded = [
            self.encoder.encode_record_texts(r.source, [c.text for c in r.candidates]) for r in records
        ]
        index = [(e, k) for e, r in enumerate(records) for k in range(len(r.candidates))]
        sequences = [self.candidate_ids(encoded[e], k) for e, k in index]
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        values = run_batches(
            sequences,
            self.encoder.pad,
            lambda b: self(b["input_ids"], b["attention_mask"]).mean(-1),
            settings,
            device,
            "candidates",
        )
        self.train(was_training)
        return split_by_record(values, [len(r.candidates) for r in records])

    def forward_passes(self, record: Record) -> int:
        return len(record.candidates)

    def settings(self) -> dict:
        return {
            "task_names": self.task_names,
            "dropout": self.dropout,
            "source_max_length": self.encoder.source_max_length,
            "candidate_max_length": self.encoder.candidate_max_length,
            "truncation": self.encoder.truncation,
            "length_hint": self.encoder.length_hint,
        }

    def save(self, directory: str | os.PathLike) -> None:
        write_checkpoint(self, self.backbone, self.tokenizer, directory, "summareranker", self.settings())

    @classmethod
    def load(cls, directory: str | os.PathLike, map_location: str = "cpu") -> SummaReranker:
        settings, backbone, tokenizer = read_checkpoint(directory, "summareranker")
        return load_weights(cls(backbone, tokenizer, **settings), directory, map_location)


# ---- training: top and bottom candidates, per-task BCE -------------------------------------------------


@dataclass
class SummaRerankerSampling:
    """Which candidates SummaReranker trains on (`ranker.sampling` in conf/ranker/summareranker.yaml).

    Attributes:
        num_pos: best candidates per instruction, by mean within-instruction rank over the tasks (paper: 1).
        num_neg: worst candidates per instruction (paper: 1).
        signal_transform: as PairRanker's (see `signal_matrix`); one name or {signal: name}.
        min_delta: a candidate within this of the instruction's best signal is a positive on that task
            (the original: exactly the best); one threshold or {signal: threshold}.
    """

    num_pos: int = 1
    num_neg: int = 1
    signal_transform: str | dict[str, str] = "none"
    min_delta: float | dict[str, float] = 0.1


def top_bottom(
    signal: np.ndarray, num_pos: int, num_neg: int, min_delta: float | Sequence[float] = 0.0
) -> tuple[list[int], np.ndarray]:
    """SummaReranker's `top_bottom` sub-sampling and its per-task labels.

    Args:
        signal: [n_candidates, n_tasks] training signal, higher is better.
        num_pos: how many of the best candidates to keep.
        num_neg: how many of the worst.
        min_delta: per task (or one for all), a candidate within this of the task's best is a positive.
    Returns:
        (chosen candidate indices, best first then worst; [len(chosen), n_tasks] labels in {0, 1}).
        Candidates are ordered by their mean within-instruction rank over tasks, so signals on different
        scales weigh alike (the original averages raw scores after fixed per-metric weights).

    Example: signal [[0.2], [0.9], [0.5], [0.1]], one positive and one negative: chosen [1, 3], labels
    [[1], [0]].
    """
    mean_rank = np.column_stack([rankdata(signal[:, t]) for t in range(signal.shape[1])]).mean(axis=1)
    order = np.argsort(-mean_rank, kind="stable")
    chosen = list(dict.fromkeys([*order[:num_pos].tolist(), *order[::-1][:num_neg].tolist()]))
    thresholds = np.broadcast_to(np.asarray(min_delta, dtype=float), signal.shape[1:])
    labels = (signal >= signal.max(axis=0) - thresholds).astype(np.float32)
    return chosen, labels[chosen]


class SummaRerankerBatches(Sequence):
    """One epoch: instructions shuffled, each contributing its top/bottom candidates, `per_batch` at a time."""

    def __init__(
        self, ranker: SummaReranker, encoded, chosen, labels, instructions_per_batch: int, seed: int
    ):
        order = np.random.default_rng(seed).permutation(len(chosen))
        self.batches = [
            order[k : k + instructions_per_batch] for k in range(0, len(order), instructions_per_batch)
        ]
        self.ranker, self.encoded, self.chosen, self.labels = ranker, encoded, chosen, labels

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rows = self.batches[index]
        sequences = [self.ranker.candidate_ids(self.encoded[e], k) for e in rows for k in self.chosen[e]]
        batch = self.ranker.encoder.pad(sequences)
        batch["labels"] = torch.from_numpy(np.concatenate([self.labels[e] for e in rows]))
        return batch


def summareranker_loss(model: SummaReranker, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    logits = model(batch["input_ids"], batch["attention_mask"])
    loss = summareranker_bce_loss(logits, batch["labels"])
    accuracy = ((logits > 0).float() == batch["labels"]).float().mean().item()
    return loss, {"label_accuracy": accuracy}


def prepare_summareranker_training(
    ranker: SummaReranker,
    records: Sequence[Record],
    signals: Sequence[str],
    sampling: SummaRerankerSampling,
    batch_size: int,
    seed: int,
) -> TrainingPlan:
    """`batch_size` counts sequences: instructions × (num_pos + num_neg)."""
    signal_by_record = [signal_matrix(r, signals, sampling.signal_transform) for r in records]
    min_delta = per_signal(sampling.min_delta, signals, "min_delta")
    encoded = [ranker.encoder.encode_record_texts(r.source, [c.text for c in r.candidates]) for r in records]
    picked = [top_bottom(s, sampling.num_pos, sampling.num_neg, min_delta) for s in signal_by_record]
    chosen, labels = [c for c, _ in picked], [lab for _, lab in picked]
    per_batch = max(1, batch_size // (sampling.num_pos + sampling.num_neg))

    def epoch_batches(epoch: int) -> SummaRerankerBatches:
        return SummaRerankerBatches(ranker, encoded, chosen, labels, per_batch, seed=seed + epoch)

    return TrainingPlan(
        epoch_batches,
        summareranker_loss,
        f"SummaReranker: {len(chosen)} instructions x {sampling.num_pos + sampling.num_neg} candidates "
        f"(top/bottom) per epoch, {per_batch} instructions a batch",
    )


KIND = RankerKind(
    name="summareranker",
    model=SummaReranker,
    build=encoder_ranker_builder(SummaReranker),
    pairwise=False,
    sampling=SummaRerankerSampling,
    prepare_training=prepare_summareranker_training,
    new_parameter_prefixes=("head.",),
)
