"""BARTScore (Yuan et al., 2021): the mean token log-likelihood of a target text given a source text under a
sequence-to-sequence model.

The paper's code used `BARTScorer(checkpoint='facebook/bart-large-cnn')` and called it with the candidate as
source and the reference as target (PAPER.md, "Metric implementations"), so the default direction here is
`candidate_to_reference`. As in the original scorer, both texts are tokenized with special tokens and cut at
`max_length`, every target token (special tokens included, padding excluded) counts, and the score is the
negated mean negative log-likelihood. The original also loaded `bart_score.pth` (BART fine-tuned on ParaBank)
on top when that file was present: `state_dict_path` does the same.
"""

from __future__ import annotations

import logging

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from blender.devices import resolve_device
from blender.metrics.base import check_pairs, checkpoint_error
from blender.packaged_models import resolve_name_or_path

log = logging.getLogger(__name__)

DIRECTIONS = ("candidate_to_reference", "reference_to_candidate")


class BARTScore:
    """Mean log p(target_t | source, target_<t) over target tokens (at most 0; higher is better).

    Args:
        name_or_path: hub id or local folder of a seq2seq model and its tokenizer.
        direction: "candidate_to_reference" (the paper's: source = candidate, target = reference) or
            "reference_to_candidate".
        batch_size: pairs per forward pass (the original used 4).
        max_length: tokens kept of each source and each target.
        device: "auto" (the GPU when there is one), "cpu", "cuda", "cuda:1", ...
        state_dict_path: optional weights loaded over the checkpoint (the ParaBank `bart_score.pth`).
        show_progress: draw a progress bar over pairs.
        name: key of this metric in its metric set; error messages point at `metrics.<name>.name_or_path`.
    """

    def __init__(
        self,
        name_or_path: str = "facebook/bart-large-cnn",
        direction: str = "candidate_to_reference",
        batch_size: int = 4,
        max_length: int = 1024,
        device: str = "auto",
        state_dict_path: str | None = None,
        show_progress: bool = True,
        name: str = "bartscore",
    ) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"metrics.{name}.direction={direction!r}; choose one of {DIRECTIONS}")
        self.name = name
        self.direction = direction
        self.batch_size = batch_size
        self.max_length = max_length
        self.show_progress = show_progress
        self.device = resolve_device(device)
        resolved = resolve_name_or_path(name_or_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(resolved)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(resolved)
        except (OSError, ValueError) as error:
            raise checkpoint_error("BARTScore", resolved, f"metrics.{name}.name_or_path", error) from error
        if state_dict_path is not None:
            self.model.load_state_dict(torch.load(state_dict_path, map_location="cpu", weights_only=True))
            log.info("loaded BARTScore weights from %s", state_dict_path)
        self.model.to(self.device).eval()

    @torch.no_grad()
    def score_texts(self, sources: list[str], targets: list[str]) -> list[float]:
        """Mean token log-likelihood of each target given its source.

        Args:
            sources: n source texts (encoder input).
            targets: n target texts (decoder output), aligned with `sources`.
        Returns:
            n scores, each the mean over the target's tokens of log p(token | source, earlier tokens).
        """
        check_pairs(sources, targets)
        scores: list[float] = []
        with tqdm(total=len(sources), desc=self.name, unit="pair", disable=not self.show_progress) as bar:
            for start in range(0, len(sources), self.batch_size):
                batch_sources = sources[start : start + self.batch_size]
                source = self._encode(batch_sources)
                target = self._encode(targets[start : start + self.batch_size])
                # Teacher forcing: the decoder reads the target shifted right by one (BART starts it with </s>).
                decoder_input_ids = self.model.prepare_decoder_input_ids_from_labels(
                    labels=target["input_ids"]
                )
                logits = self.model(
                    input_ids=source["input_ids"],
                    attention_mask=source["attention_mask"],
                    decoder_input_ids=decoder_input_ids,
                ).logits  # [batch, target_len, vocab]
                log_probs = logits.float().log_softmax(dim=-1)
                token_log_probs = log_probs.gather(-1, target["input_ids"].unsqueeze(-1)).squeeze(-1)
                # Right padding and causal decoder attention: real target positions never see the padding.
                mask = target["attention_mask"].to(token_log_probs.dtype)
                scores.extend(((token_log_probs * mask).sum(-1) / mask.sum(-1)).tolist())
                bar.update(len(batch_sources))
        return scores

    def score(self, candidates: list[str], references: list[str]) -> list[float]:
        """BARTScore of each candidate against its reference, in the configured direction.

        Args:
            candidates: n candidate texts.
            references: n reference texts, aligned with `candidates`.
        Returns:
            n scores.
        """
        if self.direction == "candidate_to_reference":
            return self.score_texts(candidates, references)
        return self.score_texts(references, candidates)

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(
            texts, max_length=self.max_length, truncation=True, padding=True, return_tensors="pt"
        )
        return {key: encoded[key].to(self.device) for key in ("input_ids", "attention_mask")}
