"""Pointwise rankers, the paper's baselines: each candidate is scored on its own, N forward passes per instruction.

SummaReranker (Ravaut et al. 2022), in the pointwise form the paper uses: a cross-encoder reads
`[source; candidate]` and a head gives one logit per task (training signal); the ranking score is the
mean over tasks. The original's shared bottom and mixture of experts are replaced by PairRanker's head
shape (Dropout → Linear H→H → Tanh → Dropout → Linear H→n_tasks), read at the first token ([CLS]) as the
original reads it.

SimCLS (Liu & Liu 2021): one encoder embeds the source and each candidate separately; the score is the
cosine of the two embeddings. Inference runs the encoder N + 1 times per instruction (the source once).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from blender.data.collate import EncodedTexts, PairEncoder, pad_ids
from blender.data.schema import Record
from blender.rankers.pairranker import RANKER_CONFIG_FILE, WEIGHTS_FILE, prepare_backbone
from blender.rankers.predict import InferenceSettings, autocast_context, length_sorted_batches

POOLINGS = ("cls", "mean")


@runtime_checkable
class PointwiseRanker(Protocol):
    """A ranker that scores each candidate on its own (SummaReranker, SimCLS, MLM-Scoring).

    `evaluation`, `api.Blender` and the train entry use these three members and nothing else, so any
    module with them is a ranker there; PairRanker is the pairwise one.
    """

    label: str

    def score_records(self, records: Sequence[Record], settings: InferenceSettings) -> list[np.ndarray]:
        """Per record, [n_candidates] scores, higher is better."""
        ...

    def forward_passes(self, record: Record) -> int:
        """Encoder forward passes (sequences run) to score one record's candidates."""
        ...

    def save(self, directory: str | os.PathLike) -> None:
        """Write a checkpoint folder that `blender.rankers.load_ranker` reads back."""
        ...


def _write_checkpoint(
    module: nn.Module,
    backbone: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    directory: str | os.PathLike,
    settings: dict,
) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    backbone.config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    save_model(module, str(directory / WEIGHTS_FILE))
    (directory / RANKER_CONFIG_FILE).write_text(json.dumps(settings, indent=2))


def _read_checkpoint(
    directory: str | os.PathLike, kind: str
) -> tuple[dict, PreTrainedModel, PreTrainedTokenizerBase]:
    directory = Path(directory)
    settings_file = directory / RANKER_CONFIG_FILE
    if not settings_file.is_file():
        raise FileNotFoundError(f"{directory}: not a ranker checkpoint (no {RANKER_CONFIG_FILE})")
    settings = json.loads(settings_file.read_text())
    if settings.pop("ranker", None) != kind:
        raise ValueError(f"{settings_file}: not a {kind} checkpoint")
    backbone = AutoModel.from_config(AutoConfig.from_pretrained(directory))
    return settings, backbone, AutoTokenizer.from_pretrained(directory)


def _run_batches(
    sequences: Sequence[list[int]],
    pad,
    step,
    settings: InferenceSettings,
    device: torch.device,
    description: str,
) -> np.ndarray:
    """Run `step(batch) -> [rows]` over length-sorted batches of `sequences`; values in input order."""
    batches = length_sorted_batches([len(s) for s in sequences], settings.max_tokens, settings.max_batch_size)
    out = np.empty(len(sequences), dtype=np.float64)
    bar = tqdm(total=len(sequences), desc=description, disable=not settings.show_progress, leave=False)
    with torch.inference_mode(), autocast_context(device, settings.mixed_precision):
        for batch in batches:
            inputs = {k: v.to(device) for k, v in pad([sequences[k] for k in batch]).items()}
            out[batch] = step(inputs).float().cpu().numpy()
            bar.update(len(batch))
    bar.close()
    return out


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
        values = _run_batches(
            sequences,
            self.encoder.pad,
            lambda b: self(b["input_ids"], b["attention_mask"]).mean(-1),
            settings,
            device,
            "candidates",
        )
        self.train(was_training)
        return _split(values, [len(r.candidates) for r in records])

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
        _write_checkpoint(
            self, self.backbone, self.tokenizer, directory, {"ranker": "summareranker", **self.settings()}
        )

    @classmethod
    def load(cls, directory: str | os.PathLike, map_location: str = "cpu") -> SummaReranker:
        settings, backbone, tokenizer = _read_checkpoint(directory, "summareranker")
        ranker = cls(backbone, tokenizer, **settings)
        load_model(ranker, str(Path(directory) / WEIGHTS_FILE), device=map_location)
        return ranker.eval()


class SimCLS(nn.Module):
    """Dual encoder: cosine similarity of the source's and the candidate's embeddings.

    Args:
        backbone: a Hugging Face encoder returning `last_hidden_state`.
        tokenizer: its tokenizer (no marker tokens: each text is encoded alone).
        task_names: the signals its training order comes from (SimCLS has one score; several signals are
            combined into one order by their mean within-instruction rank).
        pooling: "cls" (SimCLS's RoBERTa [CLS]) or "mean" (over tokens, how MiniLM was trained to embed).
        source_max_length: source budget in tokens, special tokens included.
        candidate_max_length: candidate (and reference) budget in tokens.
    """

    label = "SimCLS"

    def __init__(
        self,
        backbone: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        task_names: Sequence[str] = ("quality",),
        pooling: str = "cls",
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
        with torch.inference_mode(), autocast_context(device, settings.mixed_precision):
            for batch in tqdm(batches, desc="texts", disable=not settings.show_progress, leave=False):
                inputs = {k: v.to(device) for k, v in self.pad([texts[k] for k in batch]).items()}
                table[batch] = self.embed(inputs["input_ids"], inputs["attention_mask"]).cpu()
        self.train(was_training)
        source_table, candidate_table = table[: len(records)], table[len(records) :]
        values = (
            candidate_table
            * source_table.repeat_interleave(torch.tensor([len(r.candidates) for r in records]), dim=0)
        ).sum(-1)
        return _split(values.double().numpy(), [len(r.candidates) for r in records])

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
        _write_checkpoint(
            self, self.backbone, self.tokenizer, directory, {"ranker": "simcls", **self.settings()}
        )

    @classmethod
    def load(cls, directory: str | os.PathLike, map_location: str = "cpu") -> SimCLS:
        settings, backbone, tokenizer = _read_checkpoint(directory, "simcls")
        ranker = cls(backbone, tokenizer, **settings)
        load_model(ranker, str(Path(directory) / WEIGHTS_FILE), device=map_location)
        return ranker.eval()


def _split(values: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    """Cut a flat array of per-candidate values into one array per record."""
    return [np.asarray(part) for part in np.split(values, np.cumsum(counts)[:-1])]
