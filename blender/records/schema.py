"""The MixInstruct record, validated field by field.

A record (PAPER.md §5): `id`, `instruction`, `input`, `output` (reference), `candidates`
[{`model`, `text`, `decoding_method`, `scores` {name: float}}] and, optionally, `cmp_results`
{"modelA,modelB": label}. The hub release stores `cmp_results` as a JSON string, "null" when absent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The four labels of an LLM judge's pairwise verdict on "modelA,modelB" (ChatGPT's in MixInstruct).
CMP_LABELS = ("A is better", "B is better", "Same good", "Same bad")


# No score any metric here gives (probabilities, BLEU's 0-100, BARTScore's log-likelihoods) comes near this: a
# larger one is a corrupt record, and taken as it is it would decide which model is "best".
MAX_ABS_SCORE = 1e6


class RecordError(ValueError):
    """A record that does not follow the MixInstruct schema; the message names where and what."""


@dataclass(frozen=True)
class Candidate:
    """One LLM's answer to an instruction."""

    model: str
    text: str
    scores: dict[str, float] = field(default_factory=dict)
    decoding_method: str = "unknown"


@dataclass
class Record:
    """One instruction with its reference answer and the candidates of several LLMs."""

    id: str
    instruction: str
    input: str
    output: str
    candidates: list[Candidate]
    cmp_results: dict[str, str] | None = None
    # Fields outside the schema (e.g. alpaca_blend's `source`), kept so nothing is lost on rewrite.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The text a ranker reads as the source: instruction, then input on a new line when present."""
        return join_source(self.instruction, self.input)

    @property
    def models(self) -> list[str]:
        return [c.model for c in self.candidates]

    def to_dict(self) -> dict[str, Any]:
        """The record as the JSON object it was read from (cmp_results as a dict)."""
        return {
            "id": self.id,
            "instruction": self.instruction,
            "input": self.input,
            "output": self.output,
            **self.extra,
            "candidates": [
                {
                    "model": c.model,
                    "decoding_method": c.decoding_method,
                    "text": c.text,
                    "scores": dict(c.scores),
                }
                for c in self.candidates
            ],
            **({"cmp_results": dict(self.cmp_results)} if self.cmp_results is not None else {}),
        }


def join_source(instruction: str, input_text: str) -> str:
    # The original concatenates instruction and input with no separator, which glues words together
    # ("...below:The text"); a newline keeps them apart and costs one token at most.
    if instruction and input_text:
        return f"{instruction}\n{input_text}"
    return instruction + input_text


_REQUIRED_TEXT_FIELDS = ("id", "instruction", "input", "output")


def parse_record(raw: Any, where: str) -> Record:
    """Check one raw JSON object against the schema and build a `Record`.

    Args:
        raw: the decoded JSON object (a dict) or a `datasets` row.
        where: where it came from, e.g. "data/val.jsonl:17", put at the front of every error.
    Returns:
        The validated record.
    Raises:
        RecordError: naming `where` and the first thing that is wrong.
    """
    if not isinstance(raw, Mapping):
        raise RecordError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    for name in _REQUIRED_TEXT_FIELDS:
        if name not in raw:
            raise RecordError(f"{where}: record has no {name!r}")
        _check_text(raw[name], f"{where}: {name!r}")
    record_where = f"{where} (id {raw['id']!r})"
    if "candidates" not in raw:
        raise RecordError(f"{record_where}: record has no 'candidates'")
    raw_candidates = raw["candidates"]
    if not isinstance(raw_candidates, list) or not raw_candidates:
        raise RecordError(f"{record_where}: 'candidates' must be a non-empty list")
    candidates = [
        _parse_candidate(c, f"{record_where}: candidates[{k}]") for k, c in enumerate(raw_candidates)
    ]
    models = [c.model for c in candidates]
    if len(set(models)) != len(models):
        duplicated = sorted({m for m in models if models.count(m) > 1})
        raise RecordError(f"{record_where}: candidate models must be unique, {duplicated} repeat")
    cmp_results = _parse_cmp_results(raw.get("cmp_results"), models, record_where)
    known = {*_REQUIRED_TEXT_FIELDS, "candidates", "cmp_results"}
    extra = {k: v for k, v in raw.items() if k not in known}
    _check_nested_texts(extra, f"{record_where}: a field outside the schema")
    return Record(
        id=raw["id"],
        instruction=raw["instruction"],
        input=raw["input"],
        output=raw["output"],
        candidates=candidates,
        cmp_results=cmp_results,
        extra=extra,
    )


def _parse_candidate(raw: Any, where: str) -> Candidate:
    if not isinstance(raw, Mapping):
        raise RecordError(f"{where}: expected an object, got {type(raw).__name__}")
    for name in ("model", "text"):
        if name not in raw:
            raise RecordError(f"{where}: candidate has no {name!r}")
        _check_text(raw[name], f"{where}: {name!r}")
    decoding_method = raw.get("decoding_method") or "unknown"
    _check_text(decoding_method, f"{where}: 'decoding_method'")
    raw_scores = raw.get("scores", {})
    if raw_scores is None:
        raw_scores = {}
    if not isinstance(raw_scores, Mapping):
        raise RecordError(f"{where}: 'scores' must be an object of name -> number")
    scores: dict[str, float] = {}
    for name, value in raw_scores.items():
        # The hub release is a table: a score that only some records carry comes back as None there.
        # None means "not scored", so it is left out rather than read as a number.
        if value is None:
            continue
        _check_text(name, f"{where}: a score name")
        scores[name] = _check_score(value, f"{where}: scores[{name!r}]")
    return Candidate(model=raw["model"], text=raw["text"], scores=scores, decoding_method=decoding_method)


def _check_text(value: Any, where: str) -> str:
    """A string that UTF-8 can encode: JSON's escapes let a lone surrogate (half of a UTF-16 pair) through, and
    it would only fail later, in a tokenizer or a file write."""
    if not isinstance(value, str):
        raise RecordError(f"{where} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise RecordError(
            f"{where} holds a lone surrogate ({value[error.start]!r} at character {error.start}), which is not text: "
            "fix how the file was written"
        ) from None
    return value


def _check_nested_texts(value: Any, where: str) -> None:
    """Every string inside a JSON value (keys included), walked without recursion."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            _check_text(item, where)
        elif isinstance(item, Mapping):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)


def _check_score(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{where} must be a finite number, got {value!r}")
    try:
        number = float(value)  # an integer past a float's range overflows here
    except OverflowError:
        raise RecordError(
            f"{where} must be a finite number, got an integer of {len(str(value))} digits"
        ) from None
    if not math.isfinite(number):
        raise RecordError(f"{where} must be a finite number, got {value!r}")
    if abs(number) > MAX_ABS_SCORE:
        raise RecordError(
            f"{where} = {number:g} is beyond ±{MAX_ABS_SCORE:g}, which no metric here gives: a corrupt score "
            "(it would decide which model is best); fix or drop it"
        )
    return number


def _parse_cmp_results(raw: Any, models: list[str], where: str) -> dict[str, str] | None:
    if isinstance(raw, str):
        # The hub release encodes cmp_results as a JSON string ("null" when the judge has none).
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise RecordError(f"{where}: 'cmp_results' is a string but not valid JSON ({error})") from None
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise RecordError(f"{where}: 'cmp_results' must be an object, a JSON string or null")
    known = set(models)
    for key, label in raw.items():
        model_a, sep, model_b = key.partition(",")
        if not sep or model_a not in known or model_b not in known:
            raise RecordError(
                f"{where}: cmp_results key {key!r} must be 'modelA,modelB' with both among the candidates"
            )
        if label not in CMP_LABELS:
            raise RecordError(
                f"{where}: cmp_results[{key!r}] = {label!r}, expected one of {list(CMP_LABELS)}"
            )
    return dict(raw)
