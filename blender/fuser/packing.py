"""GenFuser's input: the instruction and the top-K candidates in one source, the reference as the target.

As the original (PAPER.md §4b, `src/gen_fuser`):

    Instruction: {instruction}</s>Input: {input}</s>Candidate 1: <extra_id_1>:{c_1}</s>…Candidate K: <extra_id_K>:{c_K}
    </s>Summarize candidates into a better one for the given instruction:

each candidate cut to `candidate_max_length` tokens with "..." appended when cut, the whole to
`max_source_length`, the target (the reference) to `max_target_length`. `</s>` is the tokenizer's separator
(T5's eos; `[SEP]` for BERT, which has no `</s>`); `<extra_id_i>:` only where the tokenizer has that token
(T5). One deliberate difference: where the whole is too long, the original cut its tail, which drops the
closing instruction; we cut the candidates' end instead and always keep the closing instruction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

CLOSING_PROMPT = "Summarize candidates into a better one for the given instruction:"
CUT_MARKER = "..."


@dataclass
class PackingSettings:
    """Token budgets and separators (`fuser.packing` in config); the defaults are the offline default fuser's
    (conf/fuser/gemma3_270m.yaml), the paper's are in conf/fuser/flan_t5_xl.yaml.

    Attributes:
        candidate_max_length: tokens per candidate (paper: 128); a cut candidate ends with `cut_marker`.
        max_source_length: tokens of the whole source, special tokens included (paper: 1024; MiniLM: ≤ 512).
        max_target_length: tokens of the target, eos included (paper: 128).
        separator: text between parts; None: the tokenizer's eos token (T5 "</s>"), else its sep token.
        add_special_tokens: wrap the source as the tokenizer does (BERT: [CLS] … [SEP]); the original: False.
        cut_marker: appended to a candidate that was cut (the original: "...").
        answer_prefix: text after the closing instruction, where the answer starts (always kept with it).
            A base LM without a chat template (Gemma 3 270M) reads "...instruction:\n" and writes the answer
            on the next line; the original (T5) had none.
    """

    candidate_max_length: int = 128
    max_source_length: int = 512
    max_target_length: int = 512
    separator: str | None = "\n\n"
    add_special_tokens: bool = True
    cut_marker: str = CUT_MARKER
    answer_prefix: str = "\n"


def separator_for(tokenizer: PreTrainedTokenizerBase, settings: PackingSettings) -> str:
    """The text between parts: the configured one, or the tokenizer's eos ("</s>"), or its sep ("[SEP]")."""
    if settings.separator is not None:
        return settings.separator
    token = tokenizer.eos_token or tokenizer.sep_token
    if token is None:
        raise ValueError(
            "the fuser's tokenizer has neither an eos nor a sep token: set fuser.packing.separator"
        )
    return token


def special_wrapping(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single text (BERT: [CLS] / [SEP]; T5: none / </s>)."""
    bare = tokenizer("x", add_special_tokens=False)["input_ids"]
    wrapped = tokenizer("x", add_special_tokens=True)["input_ids"]
    for start in range(len(wrapped) - len(bare) + 1):
        if wrapped[start : start + len(bare)] == bare:
            return wrapped[:start], wrapped[start + len(bare) :]
    raise ValueError(
        "cannot tell the tokenizer's special tokens apart: set fuser.packing.add_special_tokens=false"
    )


def _has_token(tokenizer: PreTrainedTokenizerBase, token: str) -> bool:
    # One lookup, not `get_vocab()`: that builds the whole vocabulary as a dict on every call, which for
    # Gemma's 262k tokens, three times per example, made packing the slowest step before training.
    token_id = tokenizer.convert_tokens_to_ids(token)
    return token_id is not None and (token_id != tokenizer.unk_token_id or token == tokenizer.unk_token)


def truncate_candidate(tokenizer: PreTrainedTokenizerBase, text: str, settings: PackingSettings) -> str:
    """`text` cut to `candidate_max_length` tokens, with the cut marker appended when it was cut.

    Example (whitespace tokenizer, budget 3): "a b c d e" -> "a b c..."; "a b" -> "a b".
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= settings.candidate_max_length:
        return text
    return (
        tokenizer.decode(ids[: settings.candidate_max_length], skip_special_tokens=True) + settings.cut_marker
    )


def source_text(
    tokenizer: PreTrainedTokenizerBase,
    instruction: str,
    input_text: str,
    candidates: Sequence[str],
    settings: PackingSettings,
) -> tuple[str, str]:
    """The source as (body, closing) text: candidates already cut, not yet cut to the source budget."""
    sep = separator_for(tokenizer, settings)
    parts = [f"Instruction: {instruction}", f"Input: {input_text}"]
    for k, text in enumerate(candidates, start=1):
        marker = f"<extra_id_{k}>"
        label = f"Candidate {k}: {marker}:" if _has_token(tokenizer, marker) else f"Candidate {k}:"
        parts.append(f"{label} {truncate_candidate(tokenizer, text, settings)}")
    return sep.join(parts), sep + CLOSING_PROMPT + settings.answer_prefix


def pack_source(
    tokenizer: PreTrainedTokenizerBase,
    instruction: str,
    input_text: str,
    candidates: Sequence[str],
    settings: PackingSettings,
) -> list[int]:
    """Token ids of the source, at most `max_source_length` long, ending with the closing instruction.

    Args:
        tokenizer: the fuser's tokenizer.
        instruction: the instruction.
        input_text: its input ("" when none; the part is kept, as the original).
        candidates: the K candidate texts in the order they are shown.
        settings: budgets and separators.
    Returns:
        The ids (with the tokenizer's special tokens when `add_special_tokens`).
    """
    body, closing = source_text(tokenizer, instruction, input_text, candidates, settings)
    body_ids = tokenizer(body, add_special_tokens=False)["input_ids"]
    closing_ids = tokenizer(closing, add_special_tokens=False)["input_ids"]
    prefix, suffix = special_wrapping(tokenizer) if settings.add_special_tokens else ([], [])
    n_special = len(prefix) + len(suffix)
    room = settings.max_source_length - len(closing_ids) - n_special
    if room < 1:
        raise ValueError(
            f"fuser.packing.max_source_length={settings.max_source_length} leaves no room beside the closing "
            f"instruction ({len(closing_ids)} tokens) and {n_special} special tokens"
        )
    ids = body_ids[:room] + closing_ids
    return prefix + ids + suffix


def pack_target(tokenizer: PreTrainedTokenizerBase, output: str, settings: PackingSettings) -> list[int]:
    """Token ids of the target: the reference cut to `max_target_length − 1` tokens, then eos (sep for BERT)."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if eos is None:
        raise ValueError("the fuser's tokenizer has neither an eos nor a sep token to end the target")
    ids = tokenizer(output, add_special_tokens=False)["input_ids"]
    return ids[: settings.max_target_length - 1] + [eos]


__all__ = [
    "CLOSING_PROMPT",
    "CUT_MARKER",
    "PackingSettings",
    "pack_source",
    "pack_target",
    "separator_for",
    "special_wrapping",
    "source_text",
    "truncate_candidate",
]
