"""Rank a JSONL file of instructions with candidates into a JSONL of ranks and scores, streaming, resumable.

Input, one JSON object per line:
    {"id": "q1", "instruction": "Name a prime.", "input": "", "candidates": ["4", "7", {"text": "9"}]}
`id` (string or integer; default: the line number) and `input` are optional; a candidate is a string or an
object with "text". Output, one line per input line and in the same order:
    {"id": "q1", "ranks": [3, 1, 2], "scores": [-1.2, 1.9, -0.7], "best": 1}
(ranks: 1 = best; scores: higher is better, `Blender.rank(return_scores=True)`'s; best: the index of rank 1).

The whole input is checked before any ranking, so a bad line stops the run at once with `file:line: what`.
Records are ranked in chunks; each chunk's lines are appended in one write and flushed to disk before the next.
A killed run resumes where it stopped: the output's complete lines are kept (a line cut by the kill is
dropped, so that record is ranked again), checked against the input's ids, and ranking continues after them.
No record is lost or written twice.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from blender.api import Blender
from blender.metrics.gpt_rank import competition_ranks
from blender.records import RecordError

log = logging.getLogger(__name__)


class RankFileError(RecordError):
    """A bad input line, or an output that does not belong to the input; the message names file and line."""


@dataclass(frozen=True)
class RankItem:
    """One input line: what to rank."""

    id: str
    instruction: str
    input: str
    candidates: list[str]


def parse_line(raw: Any, where: str, line_no: int) -> RankItem:
    """Check one decoded input line and build its item (errors start with `where`)."""
    if not isinstance(raw, Mapping):
        raise RankFileError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    instruction = raw.get("instruction")
    if not isinstance(instruction, str):
        raise RankFileError(
            f"{where}: 'instruction' must be a string"
            if "instruction" in raw
            else f"{where}: no 'instruction'"
        )
    input_text = raw.get("input", "")
    if not isinstance(input_text, str):
        raise RankFileError(f"{where}: 'input' must be a string")
    candidates = raw.get("candidates")
    if not isinstance(candidates, list) or len(candidates) < 2:
        raise RankFileError(f"{where}: 'candidates' must be a list of at least two answers")
    texts = []
    for k, candidate in enumerate(candidates):
        text = candidate.get("text") if isinstance(candidate, Mapping) else candidate
        if not isinstance(text, str):
            raise RankFileError(
                f"{where}: candidates[{k}] must be a string or an object with a string 'text'"
            )
        texts.append(text)
    raw_id = raw.get("id", line_no)
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise RankFileError(f"{where}: 'id' must be a string or an integer")
    return RankItem(id=str(raw_id), instruction=instruction, input=input_text, candidates=texts)


def read_items(path: str | os.PathLike) -> Iterator[RankItem]:
    """The items of an input file in order, each line checked (blank lines are skipped)."""
    path = Path(path)
    with path.open("rt", encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as error:
                raise RankFileError(
                    f"{path}:{line_no}: not valid JSON ({error.msg} at column {error.colno})"
                ) from None
            yield parse_line(raw, f"{path}:{line_no}", line_no)


def check_input(path: str | os.PathLike) -> list[str]:
    """Read the whole input once: every line valid and every id unique. Returns the ids in order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such input file")
    ids: list[str] = []
    seen: set[str] = set()
    for item in read_items(path):
        if item.id in seen:
            raise RankFileError(f"{path}: id {item.id!r} repeats (record {len(ids) + 1}); ids must be unique")
        seen.add(item.id)
        ids.append(item.id)
    return ids


def completed_ids(output: Path) -> list[str]:
    """The ids of the output's complete lines; a last line cut by a kill is removed from the file."""
    if not output.is_file():
        return []
    data = output.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        log.info("%s: dropping a line cut short by the last run (%d bytes)", output, len(data) - end)
        with output.open("r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
    ids = []
    for line_no, line in enumerate(data[:end].decode("utf-8").splitlines(), start=1):
        try:
            ids.append(str(json.loads(line)["id"]))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise RankFileError(f"{output}:{line_no}: not a line this command wrote ({error})") from None
    return ids


def rank_file(
    blender: Blender,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    chunk_size: int = 16,
    aggregation: str = "max_logits",
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, int]:
    """Rank every line of `input_path` into `output_path`, resuming a run that was killed.

    Args:
        blender: the ranker.
        input_path: the JSONL of instructions with candidates (see the module docstring).
        output_path: where the ranks and scores go; an existing file is resumed.
        chunk_size: records per ranking call and per write (at most this many are ranked again after a kill).
        aggregation: see `Blender.rank`.
        seed: the bubble run's starting order.
        show_progress: a progress bar over records.
    Returns:
        {"records", "resumed", "ranked"}: the input's records, those found done, those ranked now.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size}; it must be at least 1")
    input_path, output_path = Path(input_path), Path(output_path)
    ids = check_input(input_path)
    done = completed_ids(output_path)
    mismatch = next((k for k, (a, b) in enumerate(zip(done, ids, strict=False)) if a != b), None)
    if mismatch is None and len(done) > len(ids):
        mismatch = len(ids)
    if mismatch is not None:
        expected = repr(ids[mismatch]) if mismatch < len(ids) else "no more records"
        raise RankFileError(
            f"{output_path}:{mismatch + 1}: holds id {done[mismatch]!r} where {input_path} has {expected}: it was "
            "written from another input; remove it or choose another output"
        )
    if done:
        log.info("%s: %d of %d records already ranked; resuming", output_path, len(done), len(ids))
    output_path.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(ids), initial=len(done), desc="ranking", unit="record", disable=not show_progress)
    ranked = 0
    with output_path.open("a", encoding="utf-8") as out:
        chunk: list[RankItem] = []
        items = read_items(input_path)
        for _ in range(len(done)):
            next(items)
        for item in items:
            chunk.append(item)
            if len(chunk) == chunk_size:
                ranked += _write_chunk(blender, chunk, out, aggregation, seed)
                bar.update(len(chunk))
                chunk = []
        if chunk:
            ranked += _write_chunk(blender, chunk, out, aggregation, seed)
            bar.update(len(chunk))
    bar.close()
    return {"records": len(ids), "resumed": len(done), "ranked": ranked}


def _write_chunk(blender: Blender, chunk: list[RankItem], out, aggregation: str, seed: int) -> int:
    instructions = [item.instruction for item in chunk]
    candidates = [item.candidates for item in chunk]
    inputs = [item.input for item in chunk]
    scores = blender.rank(
        instructions, candidates, inputs, aggregation=aggregation, seed=seed, return_scores=True
    )
    lines = []
    for item, values in zip(chunk, scores, strict=True):
        ranks = competition_ranks(values).tolist()
        lines.append(
            json.dumps(
                {"id": item.id, "ranks": ranks, "scores": values, "best": ranks.index(1)}, ensure_ascii=False
            )
            + "\n"
        )
    # One write per chunk, on disk before the next chunk starts: a kill cuts at most the chunk being written.
    out.write("".join(lines))
    out.flush()
    os.fsync(out.fileno())
    return len(chunk)
