"""PairRanker: a cross-encoder that reads `[source; candidate1; candidate2]` and scores both candidates.

As the original `CrossCompareReranker` (PAPER.md §4a): take the encoder's last hidden states at the
`<|source|>`, `<|candidate1|>` and `<|candidate2|>` tokens; a head (Dropout → Linear 2H→H → Tanh →
Dropout → Linear H→n_tasks) on concat(source, candidate_k) gives candidate k one score per task; the pair
logit is the mean over tasks of s1 − s2 (> 0: candidate1 is better).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from blender.data.collate import PairEncoder, add_pair_tokens

log = logging.getLogger(__name__)

RANKER_CONFIG_FILE = "ranker_config.json"
WEIGHTS_FILE = "model.safetensors"
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
        source_max_length: source budget in tokens (paper: 128).
        candidate_max_length: budget of each candidate (paper: 128).
        truncation: how long candidates are cut ("head" as the paper, or "head_tail").
        length_hint: start each candidate part with "(N words)", its whole length (not in the paper; see
            `PairEncoder`).
        pooling: what the head reads for each part: "marker" (the paper: the hidden state at its marker
            token) or "mean" (the mean hidden state over the part, marker included: the pooling
            sentence-embedding encoders such as all-MiniLM-L6-v2 were trained with; not in the paper).
    """

    label = "PairRanker"

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
        pooling: str = "marker",
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
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.backbone.config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        save_model(self, str(directory / WEIGHTS_FILE))
        (directory / RANKER_CONFIG_FILE).write_text(
            json.dumps({"ranker": "pairranker", **self.settings()}, indent=2)
        )

    @classmethod
    def load(cls, directory: str | os.PathLike, map_location: str = "cpu") -> PairRanker:
        """Rebuild a ranker saved with `save`; needs nothing but the folder."""
        directory = Path(directory)
        settings_file = directory / RANKER_CONFIG_FILE
        if not settings_file.is_file():
            raise FileNotFoundError(f"{directory}: not a ranker checkpoint (no {RANKER_CONFIG_FILE})")
        settings = json.loads(settings_file.read_text())
        settings.pop("ranker", None)
        backbone = AutoModel.from_config(AutoConfig.from_pretrained(directory))
        tokenizer = AutoTokenizer.from_pretrained(directory)
        ranker = cls(backbone, tokenizer, **settings)
        load_model(ranker, str(directory / WEIGHTS_FILE), device=map_location)
        ranker.eval()
        return ranker
