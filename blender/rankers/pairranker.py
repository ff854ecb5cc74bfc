"""PairRanker: a cross-encoder that reads `[source; candidate1; candidate2]` and scores both candidates.

As the original `CrossCompareReranker` (PAPER.md §4a): take the encoder's last hidden states at the
`<|source|>`, `<|candidate1|>` and `<|candidate2|>` tokens; a head (Dropout → Linear 2H→H → Tanh →
Dropout → Linear H→n_tasks) on concat(source, candidate_k) gives candidate k one score per task; the pair
logit is the mean over tasks of s1 − s2 (> 0: candidate1 is better).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from blender.rankers.backbone import encoder_ranker_builder
from blender.rankers.checkpoint import load_weights, read_checkpoint, write_checkpoint
from blender.rankers.encoding import EncodedTexts, PairEncoder, add_pair_tokens
from blender.rankers.losses import absolute_target_loss, pairwise_logistic_loss
from blender.rankers.registry import RankerKind, TrainingPlan
from blender.records import Pair, Record, per_signal, sample_pairs, signal_matrix
from blender.records.pairs import PAIR_WEIGHTINGS

POOLINGS = ("marker", "mean")


def position_limit(config) -> int | None:
    """The longest input a backbone's absolute position embeddings cover; None when positions are relative
    (DeBERTa-v2/v3 with `position_biased_input=False`) or the config does not say."""
    if getattr(config, "position_biased_input", True) is False:
        return None
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and config.model_type in ("roberta", "xlm-roberta", "camembert"):
        limit -= config.pad_token_id + 1  # RoBERTa's positions start after the padding index
    return limit


def prepare_backbone(backbone: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Add the source/candidate markers to the tokenizer and the backbone's embeddings, and drop its pooler."""
    if add_pair_tokens(tokenizer):
        # New rows start at the mean of the old embeddings (transformers' default), not at noise.
        backbone.resize_token_embeddings(len(tokenizer))
    if getattr(backbone, "pooler", None) is not None:
        # Scores are read at our own positions through our own head; the [CLS] pooler would never train.
        backbone.pooler = None


class PairRanker(nn.Module):
    """The pairwise cross-encoder.

    Args:
        backbone: any Hugging Face encoder returning `last_hidden_state`.
        tokenizer: its tokenizer; the three marker tokens are added and the embeddings resized.
        task_names: one output per training signal (paper: ["bartscore"]).
        dropout: dropout in the head (paper: 0.05).
        source_max_length: source budget in tokens (paper: 128; the offline default 64).
        candidate_max_length: budget of each candidate (paper: 128; the offline default 224, so an answer's
            length shows: docs/results/pairranker.md).
        truncation: how long candidates are cut ("head" as the paper, or "head_tail").
        length_hint: start each candidate part with "(N words)", its whole length (not in the paper; see
            `PairEncoder`).
        pooling: what the head reads for each part: "marker" (the paper: the hidden state at its marker
            token) or "mean" (the offline default: the mean hidden state over the part, marker included, the
            pooling sentence-embedding encoders such as all-MiniLM-L6-v2 were trained with; not in the paper).
    """

    label = "PairRanker"

    def __init__(
        self,
        backbone: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        task_names: Sequence[str] = ("quality",),
        dropout: float = 0.05,
        source_max_length: int = 64,
        candidate_max_length: int = 224,
        truncation: str = "head",
        length_hint: bool = False,
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"ranker.pooling={pooling!r} is not one of {POOLINGS}")
        if not task_names:
            raise ValueError("PairRanker needs at least one task (training signal)")
        prepare_backbone(backbone, tokenizer)
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.task_names = list(task_names)
        self.dropout = dropout
        self.pooling = pooling
        self.encoder = PairEncoder(
            tokenizer, source_max_length, candidate_max_length, truncation, length_hint
        )
        limit, needed = position_limit(backbone.config), source_max_length + 2 * candidate_max_length
        if limit is not None and needed > limit:
            # Caught here, not as a shape error deep in the first forward pass.
            raise ValueError(
                f"source_max_length + 2 × candidate_max_length = {source_max_length} + 2 × {candidate_max_length} "
                f"= {needed} tokens, but the backbone ({backbone.config.model_type}) has {limit} positions: "
                f"lower the budgets (e.g. ranker.candidate_max_length={(limit - source_max_length) // 2})"
            )
        hidden = backbone.config.hidden_size
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * hidden, hidden),
            nn.Tanh(),
            nn.Dropout(dropout),
            # No bias: it would cancel in s1 − s2, so it could never learn.
            nn.Linear(hidden, len(self.task_names), bias=False),
        )

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Score both candidates of each pair.

        Args:
            input_ids: [batch, length] ids from `PairEncoder`, each row holding each marker once.
            attention_mask: [batch, length].
        Returns:
            (s1, s2): [batch, n_tasks] scores of candidate1 and candidate2.
        """
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        markers = (self.encoder.source_id, self.encoder.candidate1_id, self.encoder.candidate2_id)
        if self.pooling == "mean":
            # Part k runs from its marker to the next one (the tokenizer's wrapping tokens in between
            # count with the part before); padding counts with none.
            is_marker = sum(input_ids == marker for marker in markers)
            part = torch.cumsum(is_marker, dim=1) * attention_mask
            parts = [(part == k).unsqueeze(-1).to(hidden.dtype) for k in (1, 2, 3)]
            source, first, second = ((hidden * mask).sum(1) / mask.sum(1) for mask in parts)
        else:
            rows = torch.arange(input_ids.shape[0], device=input_ids.device)
            # argmax finds the first (and only) position of the marker in each row.
            source, first, second = (hidden[rows, (input_ids == m).int().argmax(dim=1)] for m in markers)
        scores_first = self.head(torch.cat([source, first], dim=-1))
        scores_second = self.head(torch.cat([source, second], dim=-1))
        return scores_first, scores_second

    def pair_logits(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """[batch] logits, mean over tasks of s1 − s2; > 0 when candidate1 is judged better."""
        scores_first, scores_second = self(input_ids, attention_mask)
        return (scores_first - scores_second).mean(dim=-1)

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
        """Write weights, settings, backbone config and tokenizer to `directory` (a loadable checkpoint)."""
        write_checkpoint(self, self.backbone, self.tokenizer, directory, "pairranker", self.settings())

    @classmethod
    def load(cls, directory: str | os.PathLike, map_location: str = "cpu") -> PairRanker:
        """Rebuild a ranker saved with `save`; needs nothing but the folder."""
        settings, backbone, tokenizer = read_checkpoint(directory, "pairranker")
        # Folders written before pooling was a setting read the marker, as the paper.
        settings.setdefault("pooling", "marker")
        return load_weights(cls(backbone, tokenizer, **settings), directory, map_location)


# ---- training: the pairs of an epoch and their loss -------------------------------------------------------


@dataclass
class PairSampling:
    """How training pairs are drawn (`ranker.sampling` in config).

    Attributes:
        pairs_per_example: pairs per instruction per epoch (paper: 5).
        signal_transform: "none", "logit" or "rank" (see `signal_matrix`), or {signal: name}.
        min_delta: signal differences at or below this are ties (no loss); or {signal: threshold} (see
            `per_signal`), since signals trained on together live on different scales.
        skip_ties: do not spend forward passes on pairs tied on every task.
        weighting: "uniform" (paper), "top" (favour pairs that involve the instruction's best answers) or
            "contested" (favour pairs of two strong answers).
        absolute_weight: weight of an absolute-target term added to the pairwise loss: BCE of each
            candidate's score against its untransformed signal, which must then lie in [0, 1] (gpt4_pref
            does). 0 (the paper) trains on sign(Δ) alone. See `absolute_target_loss`.
    """

    pairs_per_example: int = 5
    signal_transform: str | dict[str, str] = "none"
    min_delta: float | dict[str, float] = 0.1
    skip_ties: bool = True
    weighting: str = "uniform"
    absolute_weight: float = 0.0

    def __post_init__(self) -> None:
        if not self.absolute_weight >= 0:
            raise ValueError(
                f"ranker.sampling.absolute_weight={self.absolute_weight!r}; it must be 0 or more"
            )
        if self.weighting not in PAIR_WEIGHTINGS:  # caught with the config, not at the first epoch
            raise ValueError(
                f"ranker.sampling.weighting={self.weighting!r}; choose one of {', '.join(PAIR_WEIGHTINGS)}"
            )


class PairBatches(Sequence):
    """One epoch's micro-batches: pairs grouped by length (less padding), collated on access."""

    def __init__(
        self,
        ranker: PairRanker,
        encoded: Sequence[EncodedTexts],
        pairs: Sequence[Pair],
        batch_size: int,
        seed: int,
        absolute: Sequence[np.ndarray] | None = None,
    ):
        """`absolute`: per record, its [n_candidates, n_tasks] absolute targets; each batch then carries
        `absolute_first` and `absolute_second` for `absolute_target_loss`."""
        rng = np.random.default_rng(seed)
        self.ranker, self.encoded, self.absolute = ranker, encoded, absolute
        sequences = [ranker.encoder.pair_ids(encoded[p.record_index], p.first, p.second) for p in pairs]
        order = rng.permutation(len(pairs))
        # HF's group_by_length: sort inside random mega-batches, then shuffle the batches.
        mega = batch_size * 16
        batches = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start : start + mega], key=lambda k: len(sequences[k]))
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        self.batches = [batches[k] for k in rng.permutation(len(batches))]
        self.sequences, self.pairs = sequences, pairs

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rows = self.batches[index]
        batch = self.ranker.encoder.pad([self.sequences[k] for k in rows])
        pairs = [self.pairs[k] for k in rows]
        batch["targets"] = torch.tensor([p.targets for p in pairs], dtype=torch.float32)
        if self.absolute is not None:
            for key, member in (("absolute_first", "first"), ("absolute_second", "second")):
                values = np.stack([self.absolute[p.record_index][getattr(p, member)] for p in pairs])
                batch[key] = torch.as_tensor(values, dtype=torch.float32)
        return batch


def pair_loss(
    model: PairRanker, batch: dict[str, Tensor], absolute_weight: float = 0.0
) -> tuple[Tensor, dict[str, float]]:
    """The pairwise logistic loss of a batch (plus `absolute_weight` × the absolute-target term), and the
    share of decisive pairs ordered right."""
    scores_first, scores_second = model(batch["input_ids"], batch["attention_mask"])
    targets = batch["targets"]
    loss = pairwise_logistic_loss(scores_first, scores_second, targets)
    decisive = targets != 0
    correct = ((scores_first - scores_second) * targets > 0)[decisive].float()
    logged = {"pair_accuracy": correct.mean().item() if correct.numel() else float("nan")}
    if absolute_weight:
        absolute = absolute_target_loss(
            torch.cat([scores_first, scores_second]).float(),
            torch.cat([batch["absolute_first"], batch["absolute_second"]]),
        )
        loss = loss + absolute_weight * absolute
        logged["absolute_loss"] = absolute.item()
    return loss, logged


def absolute_targets(records: Sequence[Record], signals: Sequence[str]) -> list[np.ndarray]:
    """Per record, its candidates' untransformed signals, checked to be probabilities (for the BCE)."""
    targets = [signal_matrix(r, signals, "none") for r in records]
    for record, values in zip(records, targets, strict=True):
        outside = (values < 0) | (values > 1) | np.isnan(values)
        if outside.any():
            i, t = np.argwhere(outside)[0]
            raise ValueError(
                f"ranker.sampling.absolute_weight needs signals in [0, 1]: record {record.id!r}, candidate "
                f"{record.candidates[i].model!r} has {signals[t]}={values[i, t]}; set absolute_weight=0 for "
                "this signal"
            )
    return targets


def prepare_pair_training(
    ranker: PairRanker,
    records: Sequence[Record],
    signals: Sequence[str],
    sampling: PairSampling,
    batch_size: int,
    seed: int,
) -> TrainingPlan:
    """Each epoch draws `sampling.pairs_per_example` pairs per instruction anew (seeded by seed + epoch)."""
    signal_by_record = [signal_matrix(r, signals, sampling.signal_transform) for r in records]
    min_delta = per_signal(sampling.min_delta, signals, "min_delta")
    encoded = [ranker.encoder.encode_record_texts(r.source, [c.text for c in r.candidates]) for r in records]
    absolute = absolute_targets(records, signals) if sampling.absolute_weight else None
    cache: dict[int, PairBatches] = {}

    def epoch_batches(epoch: int) -> PairBatches:
        # The loop asks for an epoch's batches more than once (counting steps, resuming): build each once.
        if epoch not in cache:
            cache.clear()
            rng = np.random.default_rng(seed + epoch)
            pairs = sample_pairs(
                signal_by_record,
                sampling.pairs_per_example,
                rng,
                min_delta,
                sampling.skip_ties,
                sampling.weighting,
            )
            cache[epoch] = PairBatches(
                ranker, encoded, pairs, batch_size, seed=seed + epoch, absolute=absolute
            )
        return cache[epoch]

    first = epoch_batches(0)
    n_decisive = sum(any(t != 0 for t in pair.targets) for pair in first.pairs)
    return TrainingPlan(
        epoch_batches,
        lambda model, batch: pair_loss(model, batch, sampling.absolute_weight),
        f"{len(first.pairs)} training pairs per epoch ({n_decisive} decisive) in {len(first)} batches of "
        f"{batch_size}",
    )


KIND = RankerKind(
    name="pairranker",
    model=PairRanker,
    build=encoder_ranker_builder(PairRanker),
    pairwise=True,
    sampling=PairSampling,
    prepare_training=prepare_pair_training,
    new_parameter_prefixes=("head.",),
)
