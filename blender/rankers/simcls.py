"""SimCLS (Liu & Liu 2021), one of the paper's baselines: a dual encoder, score = cosine(source, candidate).

One encoder embeds the source and each candidate separately; inference runs it N + 1 times per instruction (the
source once). Trained with SimCLS's ranking loss: per instruction, every candidate and the reference answer are
embedded, and the candidates' cosines are pushed into the signal's order with a margin that grows with the rank
gap, plus the reference above every candidate (the "gold" term).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from blender.rankers.backbone import encoder_ranker_builder
from blender.rankers.checkpoint import load_weights, read_checkpoint, write_checkpoint
from blender.rankers.encoding import pad_ids
from blender.rankers.losses import simcls_ranking_loss
from blender.rankers.predict import (
    InferenceSettings,
    autocast_context,
    length_sorted_batches,
    split_by_record,
)
from blender.rankers.registry import RankerKind, TrainingPlan
from blender.records import Record, per_signal, signal_matrix

POOLINGS = ("cls", "mean")


class SimCLS(nn.Module):
    """Dual encoder: cosine similarity of the source's and the candidate's embeddings.

    Args:
        backbone: a Hugging Face encoder returning `last_hidden_state`.
        tokenizer: its tokenizer (no marker tokens: each text is encoded alone).
        task_names: the signals its training order comes from (SimCLS has one score; several signals are
            combined into one order by their mean within-instruction rank).
        pooling: "mean" (over tokens, how MiniLM was trained to embed) or "cls" (SimCLS's RoBERTa [CLS]).
        source_max_length: source budget in tokens, special tokens included.
        candidate_max_length: candidate (and reference) budget in tokens.
    """

    label = "SimCLS"

    def __init__(
        self,
        backbone: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        task_names: Sequence[str] = ("quality",),
        pooling: str = "mean",
        source_max_length: int = 128,
        candidate_max_length: int = 128,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r}; choose one of {list(POOLINGS)}")
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None
        self.backbone, self.tokenizer = backbone, tokenizer
        self.task_names, self.pooling = list(task_names), pooling
        self.source_max_length, self.candidate_max_length = source_max_length, candidate_max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def tokenize(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """Each text alone, with the tokenizer's special tokens, cut to `max_length` tokens."""
        return self.tokenizer(list(texts), truncation=True, max_length=max_length, split_special_tokens=True)[
            "input_ids"
        ]

    def pad(self, sequences: Sequence[list[int]]) -> dict[str, Tensor]:
        return pad_ids(sequences, self.pad_id)

    def embed(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """[batch, hidden] unit-length embeddings."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return F.normalize(pooled.float(), dim=-1)

    def forward(
        self, source_ids: Tensor, source_mask: Tensor, candidate_ids: Tensor, candidate_mask: Tensor
    ) -> Tensor:
        """Cosine similarities.

        Args:
            source_ids, source_mask: [batch, length] one source per row.
            candidate_ids, candidate_mask: [batch, n, length] n candidates per source.
        Returns:
            [batch, n] cosine of each candidate with its source.
        """
        batch, n, length = candidate_ids.shape
        sources = self.embed(source_ids, source_mask)
        candidates = self.embed(candidate_ids.view(batch * n, length), candidate_mask.view(batch * n, length))
        return (candidates.view(batch, n, -1) * sources.unsqueeze(1)).sum(-1)

    def score_records(self, records: Sequence[Record], settings: InferenceSettings) -> list[np.ndarray]:
        # Every text (sources and candidates) is embedded once, in length-sorted batches; then cosines.
        sources = self.tokenize([r.source for r in records], self.source_max_length)
        candidates = self.tokenize([c.text for r in records for c in r.candidates], self.candidate_max_length)
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        texts = [*sources, *candidates]
        batches = length_sorted_batches([len(s) for s in texts], settings.max_tokens, settings.max_batch_size)
        table = torch.empty(len(texts), self.backbone.config.hidden_size)
        with torch.inference_mode(), autocast_context(device, settings.precision):
            for batch in tqdm(batches, desc="texts", disable=not settings.show_progress, leave=False):
                inputs = {k: v.to(device) for k, v in self.pad([texts[k] for k in batch]).items()}
                table[batch] = self.embed(inputs["input_ids"], inputs["attention_mask"]).cpu()
        self.train(was_training)
        source_table, candidate_table = table[: len(records)], table[len(records) :]
        values = (
            candidate_table
            * source_table.repeat_interleave(torch.tensor([len(r.candidates) for r in records]), dim=0)
        ).sum(-1)
        return split_by_record(values.double().numpy(), [len(r.candidates) for r in records])

    def forward_passes(self, record: Record) -> int:
        return len(record.candidates) + 1  # the source is embedded once

    def settings(self) -> dict:
        return {
            "task_names": self.task_names,
            "pooling": self.pooling,
            "source_max_length": self.source_max_length,
            "candidate_max_length": self.candidate_max_length,
        }

    def save(self, directory: str | os.PathLike) -> None:
        write_checkpoint(self, self.backbone, self.tokenizer, directory, "simcls", self.settings())

    @classmethod
    def load(cls, directory: str | os.PathLike, map_location: str = "cpu") -> SimCLS:
        settings, backbone, tokenizer = read_checkpoint(directory, "simcls")
        return load_weights(cls(backbone, tokenizer, **settings), directory, map_location)


# ---- training: every candidate and the reference, ranked by the signal ---------------------------------


@dataclass
class SimCLSSampling:
    """SimCLS's loss settings (`ranker.sampling` in conf/ranker/simcls.yaml).

    Attributes:
        margin: λ, the margin per rank of gap.
        gold_margin: margin of the reference answer over every candidate.
        gold_weight: weight of the reference term (0: no reference).
        signal_transform: as PairRanker's; one name or {signal: name}.
        min_delta: candidates whose signals differ by this or less form no pair; with several signals the
            order is their mean within-instruction rank and this is 0.
    """

    margin: float = 0.01
    gold_margin: float = 0.0
    gold_weight: float = 1.0
    signal_transform: str | dict[str, str] = "none"
    min_delta: float | dict[str, float] = 0.1


def ordering_signal(signal: np.ndarray, min_delta: Sequence[float]) -> tuple[np.ndarray, float]:
    """SimCLS has one score: one task's signal as it is, several combined by mean within-instruction rank."""
    if signal.shape[1] == 1:
        return signal[:, 0], float(min_delta[0])
    return np.column_stack([rankdata(signal[:, t]) for t in range(signal.shape[1])]).mean(axis=1), 0.0


class SimCLSBatches(Sequence):
    """One epoch: instructions shuffled, `per_batch` at a time, each with all candidates and its reference."""

    def __init__(self, ranker: SimCLS, sources, candidates, references, signals, per_batch: int, seed: int):
        order = np.random.default_rng(seed).permutation(len(sources))
        # Instructions with equal candidate counts share a batch (the loss works on [batch, n]).
        by_count: dict[int, list[int]] = {}
        for e in order:
            by_count.setdefault(len(candidates[e]), []).append(int(e))
        batches = [g[k : k + per_batch] for g in by_count.values() for k in range(0, len(g), per_batch)]
        self.batches = [batches[k] for k in np.random.default_rng(seed + 1).permutation(len(batches))]
        self.ranker, self.sources, self.candidates = ranker, sources, candidates
        self.references, self.signals = references, signals

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rows = self.batches[index]
        source = self.ranker.pad([self.sources[e] for e in rows])
        # The reference is the last "candidate" of each row, so one encoder call embeds both.
        texts = [t for e in rows for t in [*self.candidates[e], self.references[e]]]
        candidates = self.ranker.pad(texts)
        n = len(self.candidates[rows[0]]) + 1
        return {
            "source_ids": source["input_ids"],
            "source_mask": source["attention_mask"],
            "candidate_ids": candidates["input_ids"].view(len(rows), n, -1),
            "candidate_mask": candidates["attention_mask"].view(len(rows), n, -1),
            "signal": torch.tensor(np.stack([self.signals[e] for e in rows]), dtype=torch.float32),
        }


def simcls_loss(
    model: SimCLS, batch: dict[str, Tensor], sampling: SimCLSSampling, min_delta: float
) -> tuple[Tensor, dict[str, float]]:
    scores = model(batch["source_ids"], batch["source_mask"], batch["candidate_ids"], batch["candidate_mask"])
    candidates, reference = scores[:, :-1], scores[:, -1]
    loss = simcls_ranking_loss(
        candidates,
        batch["signal"],
        sampling.margin,
        min_delta,
        reference,
        sampling.gold_margin,
        sampling.gold_weight,
    )
    picked = batch["signal"].gather(1, candidates.argmax(1, keepdim=True)).squeeze(1)
    return loss, {"pick_is_best": (picked >= batch["signal"].max(1).values).float().mean().item()}


def prepare_simcls_training(
    ranker: SimCLS,
    records: Sequence[Record],
    signals: Sequence[str],
    sampling: SimCLSSampling,
    batch_size: int,
    seed: int,
) -> TrainingPlan:
    """`batch_size` counts instructions: each brings all its candidates and its reference."""
    signal_by_record = [signal_matrix(r, signals, sampling.signal_transform) for r in records]
    min_delta = per_signal(sampling.min_delta, signals, "min_delta")
    orders = [ordering_signal(s, min_delta) for s in signal_by_record]
    sources = ranker.tokenize([r.source for r in records], ranker.source_max_length)
    candidates = [
        ranker.tokenize([c.text for c in r.candidates], ranker.candidate_max_length) for r in records
    ]
    references = ranker.tokenize([r.output for r in records], ranker.candidate_max_length)
    order_values = [o for o, _ in orders]
    cache: dict[int, SimCLSBatches] = {}

    def epoch_batches(epoch: int) -> SimCLSBatches:
        if epoch not in cache:
            cache.clear()
            cache[epoch] = SimCLSBatches(
                ranker, sources, candidates, references, order_values, batch_size, seed=seed + epoch
            )
        return cache[epoch]

    pair_delta = orders[0][1] if orders else 0.0
    return TrainingPlan(
        epoch_batches,
        lambda model, batch: simcls_loss(model, batch, sampling, pair_delta),
        f"SimCLS: {len(sources)} instructions per epoch, {batch_size} a batch",
    )


KIND = RankerKind(
    name="simcls",
    model=SimCLS,
    build=encoder_ranker_builder(SimCLS),
    pairwise=False,
    sampling=SimCLSSampling,
    prepare_training=prepare_simcls_training,
)
