"""Turn (source, candidate, candidate) triples into PairRanker inputs.

The original (PAPER.md §4a) tokenizes each part on its own, with the tokenizer's special tokens,
truncates it to the part's budget and concatenates the parts:
`[CLS]<|source|>x[SEP] [CLS]<|candidate1|>y_i[SEP] [CLS]<|candidate2|>y_j[SEP]`.
Every part's budget is fixed (source 128, candidate 128 in the paper), so a pair's input ids never depend
on what else is in its batch: the original's collator sized the budget by the longest source of the
batch, which made the same pair score differently in batches of 8 and 32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

SOURCE_TOKEN = "<|source|>"
CANDIDATE1_TOKEN = "<|candidate1|>"
CANDIDATE2_TOKEN = "<|candidate2|>"
PAIR_SPECIAL_TOKENS = (SOURCE_TOKEN, CANDIDATE1_TOKEN, CANDIDATE2_TOKEN)
TRUNCATION_SIDES = ("head", "head_tail")


def pad_ids(sequences: Sequence[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad id lists into `input_ids` and `attention_mask` tensors of shape [batch, longest]."""
    longest = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def length_hint_text(text: str) -> str:
    """What `length_hint` puts before a candidate: its whole length in whitespace-separated words."""
    return f"({len(text.split())} words)"


def add_pair_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add the three marker tokens to the tokenizer (no-op if present); returns how many were added."""
    return tokenizer.add_tokens(list(PAIR_SPECIAL_TOKENS), special_tokens=True)


def _special_wrapping(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text (e.g. [CLS] ... [SEP] for BERT)."""
    body = tokenizer("a", add_special_tokens=False)["input_ids"]
    wrapped = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(wrapped) - len(body) + 1):
        if wrapped[start : start + len(body)] == body:
            return wrapped[:start], wrapped[start + len(body) :]
    raise ValueError(f"cannot find how {type(tokenizer).__name__} wraps a text in special tokens")


@dataclass
class EncodedTexts:
    """A record's source and candidates as truncated token ids, each part ready to be joined."""

    source: list[int]
    candidates: list[list[int]]


class PairEncoder:
    """Tokenizes sources and candidates once and builds padded pair batches from them.

    Args:
        tokenizer: a tokenizer that already holds the three marker tokens (see `add_pair_tokens`).
        source_max_length: tokens for the source part, special tokens included (paper: 128).
        candidate_max_length: tokens for each candidate part, special tokens included (paper: 128).
        truncation: "head" keeps a long candidate's first tokens (the original); "head_tail" keeps its
            first two thirds and last third of the budget, so the model also sees how an answer ends.
        length_hint: start each candidate part with its whole length, "(N words)", inside its budget. Not
            in the paper: with 128-token windows nearly every candidate here is cut, which hides length,
            the judges' strongest bias (docs/results/pairranker.md).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        source_max_length: int = 128,
        candidate_max_length: int = 128,
        truncation: str = "head",
        length_hint: bool = False,
    ) -> None:
        if truncation not in TRUNCATION_SIDES:
            raise ValueError(f"truncation={truncation!r}; choose one of {list(TRUNCATION_SIDES)}")
        missing = [t for t in PAIR_SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
        if missing:
            raise ValueError(f"tokenizer lacks the pair marker tokens {missing}; call add_pair_tokens first")
        self.tokenizer = tokenizer
        self.source_max_length = source_max_length
        self.candidate_max_length = candidate_max_length
        self.truncation = truncation
        self.length_hint = length_hint
        self.prefix, self.suffix = _special_wrapping(tokenizer)
        self.source_id, self.candidate1_id, self.candidate2_id = tokenizer.convert_tokens_to_ids(
            list(PAIR_SPECIAL_TOKENS)
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        overhead = len(self.prefix) + len(self.suffix) + 1  # + the marker token
        if min(source_max_length, candidate_max_length) <= overhead:
            raise ValueError(f"max lengths must exceed the {overhead} special tokens each part carries")
        self.source_budget = source_max_length - overhead
        self.candidate_budget = candidate_max_length - overhead

    def _tokenize(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        # split_special_tokens: a literal "[SEP]" or "<|source|>" inside an answer stays plain text, so a
        # marker appears exactly once per pair and no answer can forge one. max_length: the tokenizer stops
        # there (None: whole texts, for keeping a tail).
        return self.tokenizer(
            list(texts),
            add_special_tokens=False,
            split_special_tokens=True,
            truncation=max_length is not None,
            max_length=max_length,
        )["input_ids"]

    def _cut(self, ids: list[int], budget: int, keep_tail: bool) -> list[int]:
        if len(ids) <= budget:
            return ids
        if keep_tail:
            tail = budget // 3
            return ids[: budget - tail] + ids[len(ids) - tail :]
        return ids[:budget]

    def encode_record_texts(self, source: str, candidates: Sequence[str]) -> EncodedTexts:
        """Tokenize one source and its candidates once; pairs are assembled from these ids."""
        (source_ids,) = self._tokenize([source], self.source_budget)
        keep_tail = self.truncation == "head_tail"
        bodies = self._tokenize(candidates, None if keep_tail else self.candidate_budget)
        if self.length_hint:
            hints = self._tokenize([length_hint_text(text) for text in candidates])
        else:
            hints = [[] for _ in candidates]
        return EncodedTexts(
            source=self._cut(source_ids, self.source_budget, keep_tail=False),
            candidates=[
                hint + self._cut(body, self.candidate_budget - len(hint), keep_tail)
                for hint, body in zip(hints, bodies, strict=True)
            ],
        )

    def pair_ids(self, encoded: EncodedTexts, first: int, second: int) -> list[int]:
        """Input ids of `[source; candidate first; candidate second]`."""
        return self.join(encoded.source, encoded.candidates[first], encoded.candidates[second])

    def join(self, source: list[int], candidate1: list[int], candidate2: list[int]) -> list[int]:
        return [
            *self.prefix,
            self.source_id,
            *source,
            *self.suffix,
            *self.prefix,
            self.candidate1_id,
            *candidate1,
            *self.suffix,
            *self.prefix,
            self.candidate2_id,
            *candidate2,
            *self.suffix,
        ]

    def pad(self, sequences: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        """Right-pad id lists into `input_ids` and `attention_mask` tensors of shape [batch, longest]."""
        return pad_ids(sequences, self.pad_id)
