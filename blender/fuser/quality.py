"""Whether fused answers read their input: how many are distinct, how many loop, how long they are.

A fuser that did not learn to read its source writes the same text for every instruction (the MiniLM
bert2bert fuser: 29 distinct answers in 100), and a small LM decoding greedily falls into loops ("the same
10-gram three or more times"). Words are whitespace-separated tokens, for answers and references alike.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def has_loop(text: str, n: int = 10, times: int = 3) -> bool:
    """Whether some n-gram of words occurs `times` or more times in `text`.

    Example (n=2, times=3): "a b a b a b" has "a b" three times -> True; "a b c a b" -> False.
    """
    words = text.split()
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return any(c >= times for c in counts.values())


@dataclass
class AnswerStatistics:
    """What `answer_statistics` measures over one split's fused answers.

    Attributes:
        n_answers: answers measured.
        n_distinct: distinct answers (after stripping spaces at the ends).
        n_empty: empty answers.
        loop_pct: % of answers with a repeated n-gram loop (`has_loop`).
        median_words: median answer length in words.
        reference_median_words: median reference length in words.
        length_ratio: median_words / reference_median_words.
    """

    n_answers: int
    n_distinct: int
    n_empty: int
    loop_pct: float
    median_words: float
    reference_median_words: float
    length_ratio: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def answer_statistics(
    answers: Sequence[str], references: Sequence[str], n: int = 10, times: int = 3
) -> AnswerStatistics:
    """Distinct answers, loops and median length (beside the references') of fused answers.

    Args:
        answers: one fused answer per instruction.
        references: the references, in the same order.
        n: loop n-gram length in words.
        times: occurrences that make a loop.
    Returns:
        The statistics.
    """
    if len(answers) != len(references) or not answers:
        raise ValueError(
            f"{len(answers)} answers and {len(references)} references: need as many, at least one"
        )
    lengths = [len(a.split()) for a in answers]
    reference_median = statistics.median(len(r.split()) for r in references)
    median = statistics.median(lengths)
    return AnswerStatistics(
        n_answers=len(answers),
        n_distinct=len({a.strip() for a in answers}),
        n_empty=sum(not a.strip() for a in answers),
        loop_pct=100.0 * sum(has_loop(a, n, times) for a in answers) / len(answers),
        median_words=float(median),
        reference_median_words=float(reference_median),
        length_ratio=float(median / reference_median) if reference_median else float("nan"),
    )


__all__ = ["AnswerStatistics", "answer_statistics", "has_loop"]
