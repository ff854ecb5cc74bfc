"""Lexical-overlap metrics: sentence BLEU through `sacrebleu` and ROUGE through `rouge-score`.

As in the paper's code (PAPER.md, "Metric implementations"): BLEU is sacrebleu's `sentence_bleu` on the
0-100 scale, and ROUGE is rouge-score's F-measure (0-1) with the Porter stemmer. The paper's code split
candidates into sentences with NLTK's punkt model before ROUGE; that only changes rougeLsum, which here
reads the texts' own newlines as sentence breaks (punkt needs a data download this project does without).
"""

from __future__ import annotations

import logging

from tqdm.auto import tqdm

from blender.metrics.base import check_pairs, require

log = logging.getLogger(__name__)

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def checked_pairs(candidates: list[str], references: list[str], name: str, show_progress: bool):
    """(candidate, reference) pairs under a progress bar, after checking the two lists align."""
    check_pairs(candidates, references)
    pairs = zip(candidates, references, strict=True)
    return tqdm(pairs, total=len(candidates), desc=name, disable=not show_progress)


class BLEU:
    """sacrebleu sentence BLEU of each candidate against its reference (0-100).

    Args:
        tokenize: sacrebleu tokenizer; None is sacrebleu's default ("13a"), which the paper used.
        show_progress: draw a progress bar over pairs.
        name: key of this metric in its metric set.
    """

    def __init__(self, tokenize: str | None = None, show_progress: bool = True, name: str = "bleu") -> None:
        sacrebleu = require("sacrebleu", "sacrebleu>=2.4", "BLEU")
        self.name = name
        self.show_progress = show_progress
        # One BLEU object, not sentence_bleu per pair: same numbers, without re-building the tokenizer each call.
        self._bleu = sacrebleu.metrics.BLEU(tokenize=tokenize, effective_order=True)

    def score(self, candidates: list[str], references: list[str]) -> list[float]:
        """Sentence BLEU of each candidate against its reference.

        Args:
            candidates: n candidate texts.
            references: n reference texts, aligned with `candidates`.
        Returns:
            n scores in [0, 100].
        """
        pairs = checked_pairs(candidates, references, self.name, self.show_progress)
        return [self._bleu.sentence_score(candidate, [reference]).score for candidate, reference in pairs]


class ROUGE:
    """rouge-score F-measure of each candidate against its reference (0-1).

    Args:
        rouge_type: one of "rouge1", "rouge2", "rougeL", "rougeLsum" (sentences split at newlines).
        use_stemmer: Porter-stem words before matching (the paper's code did).
        show_progress: draw a progress bar over pairs.
        name: key of this metric in its metric set.
    """

    def __init__(
        self,
        rouge_type: str = "rougeL",
        use_stemmer: bool = True,
        show_progress: bool = True,
        name: str = "rouge",
    ) -> None:
        if rouge_type not in ROUGE_TYPES:
            raise ValueError(f"metrics.{name}.rouge_type={rouge_type!r}; choose one of {ROUGE_TYPES}")
        rouge_scorer = require("rouge_score.rouge_scorer", "rouge-score>=0.1.2", "ROUGE")
        self.name = name
        self.rouge_type = rouge_type
        self.show_progress = show_progress
        self._scorer = rouge_scorer.RougeScorer([rouge_type], use_stemmer=use_stemmer)

    def score(self, candidates: list[str], references: list[str]) -> list[float]:
        """ROUGE F-measure of each candidate against its reference.

        Args:
            candidates: n candidate texts.
            references: n reference texts, aligned with `candidates`.
        Returns:
            n scores in [0, 1].
        """
        pairs = checked_pairs(candidates, references, self.name, self.show_progress)
        # rouge-score takes (target, prediction).
        return [
            self._scorer.score(reference, candidate)[self.rouge_type].fmeasure
            for candidate, reference in pairs
        ]
