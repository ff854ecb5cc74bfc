"""The input building of the released PairRM rankers (`llm-blender/PairRM`, `llm-blender/PairRM-hf`), copied
exactly so their weights see the ids they were trained on.

Each part is encoded on its own with the tokenizer's special tokens and a prefix token, and the parts are
joined: `[CLS] <|source|> x [SEP] [CLS] <|candidate1|> y_i [SEP] [CLS] <|candidate2|> y_j [SEP]`. The source
is cut to `source_max_length` ids (special tokens included). Each candidate is cut to
`candidate_max_length + (source_max_length − S) // 2` ids, S the source's length in ids: the source budget it
leaves unused is shared by the two candidates, and what one candidate leaves unused does not pass to the other.

That is the PairRM-hf rule, `(2048 − S) // 2` with 2048 = 1224 + 2 × 412, and the `Blender.loadranker` rule
`412 + (1224 − W) // 2` at batch size one. The original's collator takes W as the longest source *in the
batch*, so there a pair's ids depend on what it is batched with; here each record's limit comes from its own
source, so scores equal the original's at batch size one and do not depend on the batch.

The two layouts differ in one place: `Blender.loadranker`'s collator replaces the literal text "[SEP]" with a
space before tokenizing (`replace_sep=True`); the PairRM-hf recipe keeps it, so it becomes the [SEP] id.
Literal "[CLS]" becomes the [CLS] id on both. Candidates are tokenized once with the placeholder
`<|candidate|>`, whose id is replaced by `<|candidate1|>` or `<|candidate2|>` when a pair is built (what
`CrossCompareReranker._forward` does; the ids equal those of tokenizing with the final prefix, because an
added token splits the text before the rest is tokenized).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from blender.rankers.encoding import EncodedTexts, pad_ids
from blender.records import Record

PAIRRM_SOURCE_TOKEN = "<|source|>"
PAIRRM_CANDIDATE1_TOKEN = "<|candidate1|>"
PAIRRM_CANDIDATE2_TOKEN = "<|candidate2|>"
PAIRRM_CANDIDATE_TOKEN = "<|candidate|>"
# In this order: the release's ids are 128001-128004 (the fixture's 1001-1004).
PAIRRM_PREFIX_TOKENS = (
    PAIRRM_SOURCE_TOKEN,
    PAIRRM_CANDIDATE1_TOKEN,
    PAIRRM_CANDIDATE2_TOKEN,
    PAIRRM_CANDIDATE_TOKEN,
)
PAIRRM_SOURCE_MAX_LENGTH = 1224
PAIRRM_CANDIDATE_MAX_LENGTH = 412
# input_format -> whether literal "[SEP]" text is replaced by a space (see the module docstring).
PAIRRM_FORMATS = {"pairrm": True, "pairrm_hf": False}


def add_pairrm_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add the four prefixes as plain tokens (as `CrossCompareCollator` does: `tokenizer.add_tokens`, not
    special), unless present; returns how many were added."""
    missing = [t for t in PAIRRM_PREFIX_TOKENS if t not in tokenizer.get_vocab()]
    if missing and len(missing) != len(PAIRRM_PREFIX_TOKENS):
        raise ValueError(f"tokenizer holds some PairRM prefixes but not {missing}; it cannot be PairRM's")
    return tokenizer.add_tokens(list(PAIRRM_PREFIX_TOKENS)) if missing else 0


class PairRMEncoder:
    """PairRM's tokenization and truncation, with `PairEncoder`'s interface (so scoring and training use it
    unchanged).

    Args:
        tokenizer: PairRM's tokenizer, holding the four prefix tokens (see `add_pairrm_tokens`).
        source_max_length: source budget in ids, special tokens included (the release: 1224).
        candidate_max_length: each candidate's budget before the source's unused budget is shared (412).
        replace_sep: replace literal "[SEP]" text with a space (the `llm-blender/PairRM` path) or keep it
            (the PairRM-hf path).
    """

    truncation = "head"
    length_hint = False

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        source_max_length: int = PAIRRM_SOURCE_MAX_LENGTH,
        candidate_max_length: int = PAIRRM_CANDIDATE_MAX_LENGTH,
        replace_sep: bool = True,
    ) -> None:
        missing = [t for t in PAIRRM_PREFIX_TOKENS if t not in tokenizer.get_vocab()]
        if missing:
            raise ValueError(
                f"tokenizer lacks the PairRM prefix tokens {missing}; call add_pairrm_tokens first"
            )
        if tokenizer.sep_token is None:
            raise ValueError(f"{type(tokenizer).__name__} has no sep_token; PairRM's layout needs one")
        self.tokenizer = tokenizer
        self.source_max_length = source_max_length
        self.candidate_max_length = candidate_max_length
        self.replace_sep = replace_sep
        self.source_id, self.candidate1_id, self.candidate2_id, self.candidate_id = (
            tokenizer.convert_tokens_to_ids(list(PAIRRM_PREFIX_TOKENS))
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def record_source(self, record: Record) -> str:
        """The source text of a record as the original builds it: instruction + input, no separator
        (`RankerDataset`)."""
        return record.instruction + record.input

    def _clean(self, text: str) -> str:
        return text.replace(self.tokenizer.sep_token, " ") if self.replace_sep else text

    def _encode(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        # With the tokenizer's special tokens, cut to max_length ids in all (its special tokens kept), as
        # `tokenizer.encode(..., max_length=..., truncation=True)` in the original.
        return self.tokenizer(list(texts), max_length=max_length, truncation=True)["input_ids"]

    def candidate_limit(self, source_ids: Sequence[int]) -> int:
        """Ids each candidate may take next to this source: its own budget plus half the source's unused one."""
        return self.candidate_max_length + (self.source_max_length - len(source_ids)) // 2

    def encode_record_texts(self, source: str, candidates: Sequence[str]) -> EncodedTexts:
        """Tokenize one source and its candidates once (candidates carry the `<|candidate|>` placeholder)."""
        (source_ids,) = self._encode([PAIRRM_SOURCE_TOKEN + self._clean(source)], self.source_max_length)
        limit = self.candidate_limit(source_ids)
        texts = [PAIRRM_CANDIDATE_TOKEN + self._clean(c) for c in candidates]
        return EncodedTexts(source=source_ids, candidates=self._encode(texts, limit) if texts else [])

    def pair_ids(self, encoded: EncodedTexts, first: int, second: int) -> list[int]:
        """Input ids of `[source; candidate first; candidate second]`."""
        return self.join(encoded.source, encoded.candidates[first], encoded.candidates[second])

    def join(self, source: list[int], candidate1: list[int], candidate2: list[int]) -> list[int]:
        # Every occurrence of the placeholder is replaced, as `torch.where(ids == cand_prefix_id)` does.
        first = [self.candidate1_id if t == self.candidate_id else t for t in candidate1]
        second = [self.candidate2_id if t == self.candidate_id else t for t in candidate2]
        return [*source, *first, *second]

    def pad(self, sequences: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        """Right-pad id lists into `input_ids` and `attention_mask` tensors of shape [batch, longest]."""
        return pad_ids(sequences, self.pad_id)
