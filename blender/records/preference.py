"""Pairwise preference data (prompt / chosen / rejected) as records a ranker trains and is evaluated on.

The forms TRL's preference datasets take (https://huggingface.co/docs/trl/dataset_formats):
- standard, explicit prompt: {"prompt": str, "chosen": str, "rejected": str};
- conversational, explicit prompt: {"prompt": [messages], "chosen": [messages], "rejected": [messages]};
- implicit prompt: {"chosen": ..., "rejected": ...} holding the prompt too, which is their common beginning
  (a text prefix, or the leading messages), split off as TRL's `extract_prompt` does.
Extra fields are kept (`score_chosen`, ...); an "id" field names the pair (default: its line or row).

Each pair becomes a `Record` with two candidates, "chosen" (signal `preference` = 1) and "rejected" (0), so
the PairRanker training path (pair sampling, the pairwise loss) takes it as it is: with `data.signals:
[preference]` every pair is one decisive training pair. A conversation becomes text as
`render_messages` writes it. The headline metric on such data is pairwise accuracy: the share of pairs whose
chosen answer the ranker prefers (`blender.evaluation.preference`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from blender.files import iter_text_lines, parse_json_line
from blender.records.loading import DataPathError
from blender.records.schema import Candidate, Record, RecordError

PREFERENCE_SIGNAL = "preference"
CHOSEN, REJECTED = "chosen", "rejected"


def render_messages(messages: Sequence[Mapping[str, Any]], where: str) -> str:
    """A conversation as text: a lone message is its content; several are "ROLE: content" lines."""
    if not isinstance(messages, Sequence) or isinstance(messages, str):
        raise RecordError(f"{where}: expected a list of messages")
    for k, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
            raise RecordError(f"{where}[{k}]: a message is {{'role': str, 'content': str}}")
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n".join(f"{str(m.get('role', '')).upper()}: {m['content']}" for m in messages)


def split_prompt(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """(prompt, chosen, rejected) from an implicit-prompt pair: the prompt is their common beginning (for
    text, backed off to before a space, so a word is not split), as TRL's `extract_prompt`."""
    end = 0
    for end in range(min(len(chosen), len(rejected)) + 1):
        if end == min(len(chosen), len(rejected)) or chosen[end] != rejected[end]:
            break
    if isinstance(chosen, str) and end > 0 and chosen[end - 1] == " ":
        end -= 1
    return chosen[:end], chosen[end:], rejected[end:]


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    return render_messages(value, where)


def parse_preference(raw: Any, where: str, default_id: str) -> Record:
    """One preference pair as a two-candidate record.

    Args:
        raw: the decoded JSON object or `datasets` row.
        where: where it came from, e.g. "prefs/train.jsonl:7", at the front of every error.
        default_id: its id when it has no "id" field.
    Raises:
        RecordError: naming `where` and what is wrong.
    """
    if not isinstance(raw, Mapping):
        raise RecordError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    for name in (CHOSEN, REJECTED):
        if name not in raw:
            raise RecordError(f"{where}: no {name!r} (a preference pair has prompt?, chosen, rejected)")
        if not isinstance(raw[name], str | list):
            raise RecordError(f"{where}: {name!r} must be a string or a list of messages")
    chosen, rejected = raw[CHOSEN], raw[REJECTED]
    if type(chosen) is not type(rejected):
        raise RecordError(f"{where}: 'chosen' and 'rejected' must both be strings or both lists of messages")
    prompt = raw.get("prompt")
    if prompt is None:
        prompt, chosen, rejected = split_prompt(chosen, rejected)
        if not prompt:
            raise RecordError(
                f"{where}: no 'prompt', and 'chosen' and 'rejected' share no beginning to take as one"
            )
    if not isinstance(prompt, str | list):
        raise RecordError(f"{where}: 'prompt' must be a string or a list of messages")
    texts = {
        name: _text(value, f"{where}: {name!r}")
        for name, value in (("prompt", prompt), (CHOSEN, chosen), (REJECTED, rejected))
    }
    if not texts[CHOSEN].strip() or not texts[REJECTED].strip():
        raise RecordError(f"{where}: an empty chosen or rejected answer")
    raw_id = raw.get("id", default_id)
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise RecordError(f"{where}: 'id' must be a string or an integer")
    extra = {k: v for k, v in raw.items() if k not in ("id", "prompt", CHOSEN, REJECTED)}
    return Record(
        id=str(raw_id),
        instruction=texts["prompt"],
        input="",
        output="",
        candidates=[
            Candidate(model=CHOSEN, text=texts[CHOSEN], scores={PREFERENCE_SIGNAL: 1.0}),
            Candidate(model=REJECTED, text=texts[REJECTED], scores={PREFERENCE_SIGNAL: 0.0}),
        ],
        extra=extra,
    )


def is_preference_record(record: Record) -> bool:
    """A record made by `parse_preference`: candidates chosen then rejected."""
    return [c.model for c in record.candidates] == [CHOSEN, REJECTED]


def _unique(records: list[Record], label: str) -> list[Record]:
    seen: dict[str, int] = {}
    for k, record in enumerate(records):
        if record.id in seen:
            raise RecordError(f"{label}: id {record.id!r} repeats (pairs {seen[record.id] + 1} and {k + 1})")
        seen[record.id] = k
    if not records:
        raise RecordError(f"{label}: no preference pairs")
    return records


def read_preference_jsonl(path: str | os.PathLike, limit: int | None = None) -> list[Record]:
    """Every pair of a preference `.jsonl` file, checked line by line (`file:line: what`)."""
    path = Path(path)
    if not path.is_file():
        raise DataPathError(f"{path}: no such preference file")
    records: list[Record] = []
    # The same reading as MixInstruct files: bytes that are not UTF-8, a cut gzip, JSON Python refuses all end
    # in one RecordError naming file and line.
    for line_no, line in iter_text_lines(path, RecordError):
        if limit is not None and len(records) >= limit:
            break
        if not line.strip():
            continue
        raw = parse_json_line(line, f"{path}:{line_no}", RecordError)
        records.append(parse_preference(raw, f"{path}:{line_no}", default_id=f"{path.stem}/{line_no}"))
    return _unique(records, str(path))


def preference_records(dataset: Any, label: str = "dataset", limit: int | None = None) -> list[Record]:
    """Pairs from a `datasets.Dataset` (or any sequence of rows) in TRL's preference format."""
    rows = (
        dataset
        if limit is None
        else (
            dataset.select(range(min(limit, len(dataset))))
            if hasattr(dataset, "select")
            else list(dataset)[:limit]
        )
    )
    records = [
        parse_preference(row, f"{label} row {i}", default_id=f"{label}/{i}") for i, row in enumerate(rows)
    ]
    return _unique(records, label)


def load_preference_split(
    path: str | os.PathLike | None,
    split: str,
    limit: int | None = None,
    hub_id: str | None = None,
) -> list[Record]:
    """A split of preference pairs: `<path>/<split>.jsonl`, or a hub dataset through `datasets` (TRL's
    preference datasets such as `trl-lib/ultrafeedback_binarized`) when `path` is None."""
    if path is not None:
        folder = Path(path)
        file = folder / f"{split}.jsonl" if folder.is_dir() else folder
        if folder.is_dir() and not file.is_file():
            present = sorted(p.name for p in folder.glob("*.jsonl"))
            raise DataPathError(f"{folder}: no {split}.jsonl (found: {present or 'none'})")
        return read_preference_jsonl(file, limit)
    if hub_id is None:
        raise DataPathError("neither data.path nor data.hub_id is set")
    import datasets  # heavy import, only on this path

    try:
        dataset = datasets.load_dataset(hub_id, split=split)
    except Exception as error:  # datasets raises many types for an unreachable hub or a missing split
        raise DataPathError(
            f"could not load dataset {hub_id!r} split {split!r} through `datasets` ({type(error).__name__}: {error}). "
            "Without hub access, save it as <split>.jsonl files elsewhere and point data.path at their folder"
        ) from error
    return preference_records(dataset, f"{hub_id}[{split}]", limit)
