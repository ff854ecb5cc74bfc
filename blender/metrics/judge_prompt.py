"""The judge's prompt and labels: the paper's template, candidate cleaning, strict parsing, both orders.

PAPER.md §5 ("ChatGPT pairwise judging"); the template and `deduplicate_string` are the authors'
(`gpt_eval.py`, `gpt_eval/utils.py`), the parsing is stricter than theirs (see `parse_label`).
"""

from __future__ import annotations

import re

from blender.metrics.gpt_rank import CMP_LABELS

PAPER_SYSTEM_PROMPT = "You are an AI assistant that helps people find information."

# Verbatim from the authors' gpt_eval.py, trailing spaces after the headers and the final newline included.
PAPER_PROMPT_TEMPLATE = (
    "Instruction: \n"
    "${instruction}\n"
    "\n"
    "Input: \n"
    "${input}\n"
    "\n"
    "Candidate A: \n"
    "${candidate1}\n"
    "\n"
    "Candidate B: \n"
    "${candidate2}\n"
    "\n"
    "Given the instruction and input above, please compare the two candidates.\n"
    "You only have 4 choices to output:\n"
    "If you think A is better, please output: 1. A is better\n"
    "If you think B is better, please output: 2. B is better\n"
    "If you think both are good enough correctly give the answer, please output: 3. Same good\n"
    "If you think both are bad and do not follow the instruction, please output: 4. Same bad\n"
    "Do not output anything else except the 4 choices above.\n"
    "Output your choice below:\n"
)

PROMPT_PLACEHOLDERS = ("instruction", "input", "candidate1", "candidate2")
_LABEL_BY_TEXT = {label.casefold(): label for label in CMP_LABELS}
_ANSWER_RE = re.compile(
    r"(?:([1-4])\s*[.):]?\s*)?(a is better|b is better|same good|same bad)?", re.IGNORECASE
)
# A label read with the candidates shown the other way round.
_SWAPPED_LABEL = {
    "A is better": "B is better",
    "B is better": "A is better",
    "Same good": "Same good",
    "Same bad": "Same bad",
}


def deduplicate_string(text: str, repeat: int = 4) -> str:
    """Cut a text where it starts repeating itself and append "...", as the authors' `deduplicate_string`.

    Words are split on single spaces; word i is kept unless the window of `repeat` words starting at it
    already occurs (as a substring) in the text kept so far. Kept exactly as the authors wrote it, so
    prompts match theirs, quirks included: the windows at the end are shorter than `repeat`, so a text
    whose last word (or last 2-3 words) already occurs inside the kept text, even inside another word, is
    cut too ("a cat and a" -> "a cat and...", "on my iron" -> "on my iron" but "iron on" -> "iron..."),
    and an empty text becomes "...". `JudgeSettings.dedup_repeat=None` sends texts uncut instead.

    Args:
        text: a candidate's answer.
        repeat: window length in words.
    Returns:
        The text up to the first repeat, with "..." appended when it was cut; stripped.
    """
    kept = ""
    words = text.split(" ")
    for i in range(len(words)):
        if " ".join(words[i : i + repeat]) in kept:
            kept += "..."
            break
        kept += " " + words[i]
    return kept.strip()


def parse_label(answer: str | None) -> str | None:
    """Read one of `CMP_LABELS` from a judge's answer, strictly.

    Accepted, case-insensitively, after stripping spaces and a final ".": the digit alone ("1"), the label
    alone ("A is better"), or the digit then the label ("1. A is better", "1) A is better"). A digit and a
    label that disagree ("1. B is better"), any other words, or no answer are unparsable.

    Args:
        answer: the message content.
    Returns:
        The label, or None when the answer is unparsable.
    """
    if answer is None:
        return None
    text = answer.strip().removesuffix(".").rstrip()
    match = _ANSWER_RE.fullmatch(text)
    if match is None or not text:
        return None
    digit, label_text = match.groups()
    by_digit = CMP_LABELS[int(digit) - 1] if digit else None
    by_text = _LABEL_BY_TEXT[label_text.casefold()] if label_text else None
    if by_digit and by_text and by_digit != by_text:
        return None
    return by_digit or by_text


def combine_verdicts(label: str, label_swapped: str) -> str:
    """Combine the labels of one pair judged in both orders, both in the key's orientation.

    The rule is MT-Bench's conservative one (Zheng et al., 2023): a preference counts only when both
    orders agree; any disagreement means the verdict followed the position, so the pair is a tie. The tie
    is "Same bad" when either order called both candidates bad, otherwise "Same good". A tie adds 0 to
    both GPT-Rank scores (±0.5 cancels in M − Mᵀ), so the choice of tie label only moves label counts.

    Args:
        label: the label with the key's first model shown as A.
        label_swapped: the label with it shown as B, already mapped back to the key's orientation.
    Returns:
        One of `CMP_LABELS`.
    """
    if label == label_swapped:
        return label
    return "Same bad" if "Same bad" in (label, label_swapped) else "Same good"


def swap_label(label: str) -> str:
    """The same verdict with A and B exchanged ("A is better" <-> "B is better"; ties stay).

    Args:
        label: one of `CMP_LABELS`.
    Returns:
        One of `CMP_LABELS`.
    """
    return _SWAPPED_LABEL[label]
