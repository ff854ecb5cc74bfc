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
        if not isinstance(raw[name], str):
            raise RecordError(f"{where}: {name!r} must be a string, got {type(raw[name]).__name__}")
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
        if not isinstance(raw[name], str):
            raise RecordError(f"{where}: {name!r} must be a string, got {type(raw[name]).__name__}")
    decoding_method = raw.get("decoding_method") or "unknown"
    if not isinstance(decoding_method, str):
        raise RecordError(f"{where}: 'decoding_method' must be a string")
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
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise RecordError(f"{where}: scores[{name!r}] must be a finite number, got {value!r}")
        scores[name] = float(value)
    return Candidate(model=raw["model"], text=raw["text"], scores=scores, decoding_method=decoding_method)


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
