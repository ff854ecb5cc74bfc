"""MLM-Scoring (Salazar et al. 2020), the paper's unsupervised baseline: a candidate's pseudo-log-likelihood.

PLL(W) = Σ_t log P(w_t | W_\\t) (PAPER.md §8 item 5): mask one token at a time and read the masked LM's
log-probability of the true token there. A candidate of m tokens costs m forward passes; all masked copies
of all candidates go into one pool, sorted by length and cut into batches, so many positions of one
sequence are scored in one batch.

`context="none"` (the default) scores the candidate alone, as the paper's formula does: a fluency score
that never reads the instruction. `context="source"` puts the source before the candidate as unmasked
context and sums over the candidate's tokens only, so the score asks "how likely is this answer after this
instruction"; it costs the source's tokens in every pass.

The head: a checkpoint with a masked-LM head (`bert-base-uncased`, `roberta-large`,
`microsoft/deberta-v3-large` ...) is used as trained (`head="mlm"`). A sentence-embedding checkpoint such
as the packaged all-MiniLM-L6-v2 has no head (no `cls.predictions.*` weights): `head="auto"` then falls
back to `head="tied"`, logits = last hidden state · input embeddingsᵀ (the decoder BERT ties to its input
embeddings, without the head's trained transform and bias). That is the most a head-less checkpoint can
give, and it is not a language model: its PLL is close to noise, which the results say plainly.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from blender.packaged_models import resolve_name_or_path
from blender.rankers.backbone import BackboneSettings, _load_error, load_tokenizer
from blender.rankers.checkpoint import RANKER_CONFIG_FILE, read_ranker_config
from blender.rankers.predict import InferenceSettings, autocast_context, length_sorted_batches
from blender.rankers.registry import RankerKind
from blender.records.schema import Record

log = logging.getLogger(__name__)

HEADS = ("auto", "mlm", "tied")
CONTEXTS = ("none", "source")
NORMALIZATIONS = ("sum", "mean")


class MLMScorer(nn.Module):
    """Pseudo-log-likelihood of each candidate under a masked LM.

    Args:
        model: a Hugging Face masked LM (`AutoModelForMaskedLM`).
        tokenizer: its tokenizer (must have a mask token).
        head: "mlm" (the model's own head) or "tied" (hidden · input embeddingsᵀ; see the module docstring).
        context: "none" (the candidate alone, the paper's formula) or "source" (the source as context).
        source_max_length: source tokens kept as context (context="source").
        candidate_max_length: candidate tokens scored, special tokens excluded; each costs one pass.
        normalize: "sum" (PLL, the paper's formula) or "mean" (PLL per token, no length penalty).
    """

    label = "MLM-Scoring"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        head: str = "mlm",
        context: str = "none",
        source_max_length: int = 64,
        candidate_max_length: int = 64,
        normalize: str = "sum",
    ) -> None:
        super().__init__()
        for value, choices, what in (
            (head, HEADS[1:], "head"),
            (context, CONTEXTS, "context"),
            (normalize, NORMALIZATIONS, "normalize"),
        ):
            if value not in choices:
                raise ValueError(f"mlm_scoring {what}={value!r}; choose one of {list(choices)}")
        if tokenizer.mask_token_id is None:
            raise ValueError(
                f"{type(tokenizer).__name__} has no mask token: MLM-Scoring needs a masked LM's tokenizer"
            )
        self.model, self.tokenizer = model, tokenizer
        self.head, self.context, self.normalize = head, context, normalize
        self.source_max_length, self.candidate_max_length = source_max_length, candidate_max_length
        # BERT-likes read token types (the candidate is segment B after a source); RoBERTa-likes have none.
        self.uses_token_types = "token_type_ids" in inspect.signature(model.base_model.forward).parameters

    def _cut(self, text: str, max_tokens: int) -> str:
        """The text up to its `max_tokens`-th token (character offsets, so any tokenizer family works)."""
        encoded = self.tokenizer(
            text,
            add_special_tokens=False,
            return_offsets_mapping=True,
            truncation=True,
            max_length=max_tokens + 1,
            split_special_tokens=True,
        )
        if len(encoded["input_ids"]) <= max_tokens:
            return text
        return text[: encoded["offset_mapping"][max_tokens - 1][1]] if max_tokens > 0 else ""

    def sequence(self, source: str, candidate: str) -> tuple[list[int], list[int], list[int]]:
        """(input ids, token type ids, positions of the candidate's tokens) for one candidate.

        The tokenizer adds its own special tokens (`[CLS] x [SEP] y [SEP]` for BERT, `<s> x </s></s> y </s>` for
        RoBERTa); the scored positions are those its `sequence_ids` assign to the candidate.
        """
        candidate = self._cut(candidate, self.candidate_max_length)
        if self.context == "source":
            encoded = self.tokenizer(
                self._cut(source, self.source_max_length),
                candidate,
                return_token_type_ids=True,
                split_special_tokens=True,
            )
            part = 1
        else:
            encoded = self.tokenizer(candidate, return_token_type_ids=True, split_special_tokens=True)
            part = 0
        positions = [k for k, s in enumerate(encoded.sequence_ids()) if s == part]
        ids = list(encoded["input_ids"])
        return ids, list(encoded.get("token_type_ids") or [0] * len(ids)), positions

    def masked_log_probs(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor,
        positions: Tensor,
        targets: Tensor,
    ) -> Tensor:
        """log P(target | masked row) at each row's masked position.

        Args:
            input_ids: [batch, length] rows with the mask token at `positions`.
            attention_mask: [batch, length].
            token_type_ids: [batch, length].
            positions: [batch] the masked position of each row.
            targets: [batch] the true token there.
        Returns:
            [batch] log-probabilities.
        """
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.uses_token_types:
            inputs["token_type_ids"] = token_type_ids
        if self.head == "tied":
            # Only the masked position's hidden state is projected on the vocabulary: [batch, vocab].
            hidden = self.model.base_model(**inputs).last_hidden_state[rows, positions]
            logits = hidden @ self.model.get_input_embeddings().weight.T
        else:
            logits = self.model(**inputs).logits[rows, positions]
        return torch.log_softmax(logits.float(), dim=-1)[rows, targets]

    def score_records(self, records: Sequence[Record], settings: InferenceSettings) -> list[np.ndarray]:
        # One masked copy per (candidate, scored position): built lazily per batch from its base sequence.
        bases, copies = [], []  # copies: (base index, position)
        owners = []  # base index -> (record, candidate)
        for e, record in enumerate(records):
            for k, candidate in enumerate(record.candidates):
                ids, types, positions = self.sequence(record.source, candidate.text)
                copies += [(len(bases), p) for p in positions]
                bases.append((ids, types))
                owners.append((e, k))
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        batches = length_sorted_batches(
            [len(bases[b][0]) for b, _ in copies], settings.max_tokens, settings.max_batch_size
        )
        log_probs = np.empty(len(copies))
        bar = tqdm(total=len(copies), desc="masked tokens", disable=not settings.show_progress, leave=False)
        with torch.inference_mode(), autocast_context(device, settings.precision):
            for batch in batches:
                longest = max(len(bases[copies[c][0]][0]) for c in batch)
                input_ids = torch.full(
                    (len(batch), longest), self.tokenizer.pad_token_id or 0, dtype=torch.long
                )
                token_types = torch.zeros((len(batch), longest), dtype=torch.long)
                attention = torch.zeros((len(batch), longest), dtype=torch.long)
                positions, targets = [], []
                for row, c in enumerate(batch):
                    base, position = copies[c]
                    ids, types = bases[base]
                    input_ids[row, : len(ids)] = torch.tensor(ids)
                    token_types[row, : len(ids)] = torch.tensor(types)
                    attention[row, : len(ids)] = 1
                    targets.append(ids[position])
                    positions.append(position)
                    input_ids[row, position] = self.tokenizer.mask_token_id
                out = self.masked_log_probs(
                    input_ids.to(device),
                    attention.to(device),
                    token_types.to(device),
                    torch.tensor(positions, device=device),
                    torch.tensor(targets, device=device),
                )
                log_probs[batch] = out.cpu().numpy()
                bar.update(len(batch))
        bar.close()
        self.train(was_training)
        totals = np.zeros(len(bases))
        counts = np.zeros(len(bases))
        np.add.at(totals, [b for b, _ in copies], log_probs)
        np.add.at(counts, [b for b, _ in copies], 1)
        values = totals if self.normalize == "sum" else totals / np.maximum(counts, 1)
        scores = [np.zeros(len(r.candidates)) for r in records]
        for (e, k), value in zip(owners, values, strict=True):
            scores[e][k] = value
        return scores

    def forward_passes(self, record: Record) -> int:
        """One pass per scored candidate token (each masked copy is a sequence the model runs)."""
        return sum(len(self.sequence(record.source, c.text)[2]) for c in record.candidates)

    def settings(self) -> dict:
        return {
            "head": self.head,
            "context": self.context,
            "source_max_length": self.source_max_length,
            "candidate_max_length": self.candidate_max_length,
            "normalize": self.normalize,
        }

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        (directory / RANKER_CONFIG_FILE).write_text(
            json.dumps({"ranker": "mlm_scoring", **self.settings()}, indent=2)
        )

    @classmethod
    def load(cls, directory: str | os.PathLike, map_location: str = "cpu") -> MLMScorer:
        directory = Path(directory)
        settings = read_ranker_config(directory)
        settings.pop("ranker")
        model = AutoModelForMaskedLM.from_pretrained(directory).to(map_location)
        return cls(model, AutoTokenizer.from_pretrained(directory), **settings).eval()


def build_mlm_scorer(
    name_or_path: str | None = None,
    config: dict[str, Any] | None = None,
    tokenizer: str | None = None,
    head: str = "auto",
    **settings: Any,
) -> MLMScorer:
    """An MLM scorer from the backbone settings (`conf/backbone/*.yaml`) and `conf/ranker/mlm_scoring.yaml`.

    Args:
        name_or_path: "minilm", any hub masked LM (e.g. "roberta-large") or a local folder.
        config: instead, a config dict (with `model_type`) for a random masked LM (tests).
        tokenizer: tokenizer name or folder; defaults to `name_or_path`.
        head: "auto" (the checkpoint's MLM head when it has one, else "tied"), "mlm" or "tied".
        settings: `MLMScorer`'s other arguments.
    Returns:
        The scorer, in eval mode.
    """
    if (name_or_path is None) == (config is None):
        raise ValueError(
            "give the masked LM either name_or_path (pretrained) or config (random init), not both"
        )
    if head not in HEADS:
        raise ValueError(f"mlm_scoring head={head!r}; choose one of {list(HEADS)}")
    loaded_tokenizer = load_tokenizer(tokenizer or name_or_path)
    if config is not None:
        values = dict(config)
        model_type = values.pop("model_type")
        values.setdefault("vocab_size", len(loaded_tokenizer))
        model = AutoModelForMaskedLM.from_config(AutoConfig.for_model(model_type, **values))
        return MLMScorer(model, loaded_tokenizer, head="mlm" if head == "auto" else head, **settings).eval()
    resolved = resolve_name_or_path(name_or_path)
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(resolved, output_loading_info=True)
    except (OSError, ValueError) as error:
        raise _load_error("masked LM", resolved, error) from error
    # Encoder keys all load for a sentence-embedding checkpoint; only the head's are missing.
    missing_head = sorted(k for k in info["missing_keys"] if not k.endswith("position_ids"))
    if missing_head and head == "mlm":
        raise ValueError(
            f"{name_or_path!r} has no trained masked-LM head (missing {missing_head}); use head=tied "
            "or a masked LM such as bert-base-uncased"
        )
    if head == "auto":
        head = "tied" if missing_head else "mlm"
    if missing_head:
        log.warning(
            "%s has no masked-LM head (missing %s): scoring with the input embeddings as the decoder "
            "(head=tied); this checkpoint was not trained to predict tokens, so its PLL is close to noise",
            name_or_path,
            ", ".join(missing_head),
        )
    return MLMScorer(model, loaded_tokenizer, head=head, **settings).eval()


def _build_from_backbone(
    settings: dict[str, Any], backbone: BackboneSettings, task_names: list[str]
) -> MLMScorer:
    # The backbone group names the masked LM; MLM-Scoring has no tasks (it is not trained).
    return build_mlm_scorer(backbone.name_or_path, backbone.config, backbone.tokenizer, **settings)


KIND = RankerKind(name="mlm_scoring", model=MLMScorer, build=_build_from_backbone, pairwise=False)
