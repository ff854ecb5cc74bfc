"""The scoring job: add `scores[<metric>]` to every candidate of a split, resumably.

Records are scored a chunk at a time. Each finished chunk is appended to a journal beside the output
(`<out>.partial.jsonl`) and flushed to disk, so a killed run loses at most the chunk it was scoring. A kill
in the middle of an append leaves a torn last line; on restart it is cut off and its records are scored
again: only complete lines count as done. The output appears whole (temp file + rename) once every input
record has come back exactly once with every metric on every candidate; then the journal is removed.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from blender.files import write_jsonl_atomic
from blender.metrics.base import ReferenceMetric
from blender.records.loading import read_jsonl
from blender.records.schema import Record, RecordError, parse_record

log = logging.getLogger(__name__)


class ScoringError(RuntimeError):
    """A scoring run that cannot go on or did not finish whole; the message says what and where."""


def journal_path(out_path: str | os.PathLike) -> Path:
    """`<out>.partial.jsonl`: the journal of finished chunks beside the output."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".partial.jsonl")


def extra_scores_key(field: str) -> str:
    """Where an extra output's scores live: `record.extra[f"{field}_scores"]` = {metric: value}."""
    return f"{field}_scores"


def missing_scores(
    record: Record, metric_names: Sequence[str], extra_outputs: Sequence[str] = ()
) -> list[str]:
    """What `record` still lacks, as "model:metric" / "field:metric" strings (empty when fully scored)."""
    missing = [f"{c.model}:{m}" for c in record.candidates for m in metric_names if m not in c.scores]
    for field in extra_outputs:
        scored = record.extra.get(extra_scores_key(field)) or {}
        missing += [f"{field}:{m}" for m in metric_names if m not in scored]
    return missing


def _read_journal(path: Path) -> list[Record]:
    """The complete records of a journal; a torn last line (a kill mid-append) is cut off the file."""
    records: list[Record] = []
    good_bytes = 0
    with open(path, "rb") as handle:
        lines = handle.readlines()
    for line_no, line in enumerate(lines, start=1):
        last = line_no == len(lines)
        try:
            if not line.endswith(b"\n"):
                raise ValueError("no newline at the end")
            raw = json.loads(line)
        except ValueError as error:
            if last:
                log.warning(
                    "%s:%d: torn last line (%s), dropped; its records are scored again", path, line_no, error
                )
                break
            raise ScoringError(
                f"{path}:{line_no}: corrupt journal line ({error}) before the last one; "
                "delete the journal to score from the start"
            ) from None
        records.append(parse_record(raw, where=f"{path}:{line_no}"))
        good_bytes += len(line)
    if good_bytes < path.stat().st_size:
        with open(path, "r+b") as handle:
            handle.truncate(good_bytes)
    return records


def _check_prefix(done: list[Record], records: Sequence[Record], journal: Path) -> None:
    if len(done) > len(records):
        raise ScoringError(
            f"{journal}: holds {len(done)} records but the input has {len(records)}: the input changed since the "
            "journal was written; delete the journal (or pass resume=false) to score from the start"
        )
    for k, (old, new) in enumerate(zip(done, records, strict=False)):
        if old.id != new.id:
            raise ScoringError(
                f"{journal}: record {k} is {old.id!r} but the input's record {k} is {new.id!r}: the input changed "
                "since the journal was written; delete the journal (or pass resume=false) to score from the start"
            )


def _score_chunk(
    chunk: Sequence[Record], metrics: Mapping[str, ReferenceMetric], extra_outputs: Sequence[str]
) -> list[Record]:
    # One flat list of (text, reference) pairs per chunk, so each metric makes one batched call.
    texts, references = [], []
    for record in chunk:
        for candidate in record.candidates:
            texts.append(candidate.text)
            references.append(record.output)
        for field in extra_outputs:
            text = record.extra.get(field)
            if not isinstance(text, str):
                raise RecordError(f"record {record.id!r}: extra output {field!r} is missing or not a string")
            texts.append(text)
            references.append(record.output)
    by_metric: dict[str, list[float]] = {}
    for name, metric in metrics.items():
        values = metric.score(texts, references)
        if len(values) != len(texts):
            raise ScoringError(f"metrics.{name}: returned {len(values)} scores for {len(texts)} texts")
        for k, value in enumerate(values):
            if not math.isfinite(value):
                raise ScoringError(f"metrics.{name}: non-finite score {value!r} for text {k} of the chunk")
        by_metric[name] = [float(v) for v in values]
    scored, position = [], 0
    for record in chunk:
        candidates = []
        for candidate in record.candidates:
            new = {name: values[position] for name, values in by_metric.items()}
            candidates.append(replace(candidate, scores={**candidate.scores, **new}))
            position += 1
        extra = dict(record.extra)
        for field in extra_outputs:
            key = extra_scores_key(field)
            extra[key] = {**(extra.get(key) or {}), **{n: v[position] for n, v in by_metric.items()}}
            position += 1
        scored.append(replace(record, candidates=candidates, extra=extra))
    return scored


def _append(journal: Path, records: Sequence[Record]) -> None:
    payload = "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records)
    with open(journal, "a", encoding="utf-8") as handle:
        handle.write(payload)
        handle.flush()
        # A chunk counts as done only once it is on disk: a kill after this loses nothing.
        os.fsync(handle.fileno())


def check_scored(
    scored: Sequence[Record],
    records: Sequence[Record],
    metric_names: Sequence[str],
    extra_outputs: Sequence[str] = (),
) -> None:
    """Fail unless every input record came back exactly once, in order, fully scored.

    Raises:
        ScoringError: naming the first id that is missing, repeated or out of place, or the first record
            with an unscored candidate.
    """
    want, got = [r.id for r in records], [r.id for r in scored]
    if want != got:
        repeated = sorted({i for i in got if got.count(i) > 1})
        lost = sorted(set(want) - set(got))
        raise ScoringError(
            f"scored {len(got)} records for {len(want)} inputs: repeated {repeated[:5]}, missing {lost[:5]}"
            + ("" if repeated or lost else " (order differs)")
        )
    for record, original in zip(scored, records, strict=True):
        if record.models != original.models:
            raise ScoringError(f"record {record.id!r}: candidates changed while scoring")
        missing = missing_scores(record, metric_names, extra_outputs)
        if missing:
            raise ScoringError(f"record {record.id!r}: no score for {missing[:5]}")


def read_scored(
    paths: Sequence[str | os.PathLike], records: Sequence[Record], metric_names: Sequence[str]
) -> list[Record] | None:
    """The first of `paths` that holds `records` completely scored by `metric_names` (a finished `score_split`
    output, e.g. the one `make train-fuser` wrote beside its fuser), else None. A file that is missing,
    unfinished, unreadable or about other records is passed over, never an error: the caller scores anew."""
    for path in map(Path, paths):
        if not path.is_file() or journal_path(path).exists():
            continue
        try:
            existing = read_jsonl(path)
            check_scored(existing, records, metric_names)
        except (RecordError, ScoringError) as error:
            log.info("%s: not reusable here (%s)", path, error)
            continue
        log.info("reusing the scores in %s", path)
        return existing
    return None


def score_split(
    records: Sequence[Record],
    metrics: Mapping[str, ReferenceMetric],
    out_path: str | os.PathLike,
    batch_records: int = 16,
    extra_outputs: Sequence[str] | None = None,
    resume: bool = True,
    show_progress: bool = True,
) -> list[Record]:
    """Score every candidate of `records` against its reference with each metric and write them to `out_path`.

    Args:
        records: the split, in order; ids must be unique.
        metrics: `{key: metric}` from `build_metrics`; each candidate gets `scores[key]`. Scores already there
            under other keys (e.g. `gpt4_pref`) are kept; the same key is overwritten.
        out_path: the `.jsonl` (or `.jsonl.gz`) file to write; its folder then is a data folder.
        batch_records: records per chunk: one `metric.score` call per metric per chunk, one journal append.
        extra_outputs: names of `record.extra` fields holding another text to score against the reference
            (e.g. a fused answer under "fused"); its scores go to `record.extra["<field>_scores"]`.
        resume: continue from the journal of an earlier run and accept an existing complete output;
            False deletes both and starts over.
        show_progress: draw a bar over records.
    Returns:
        The scored records, in input order.
    Raises:
        ScoringError: the journal does not match the input, or the result is not whole.
    """
    if batch_records < 1:
        raise ValueError(f"batch_records must be at least 1, got {batch_records}")
    out_path, extra_outputs = Path(out_path), tuple(extra_outputs or ())
    journal, names = journal_path(out_path), list(metrics)
    if not resume:
        journal.unlink(missing_ok=True)
    elif out_path.is_file() and not journal.exists():
        existing = read_jsonl(out_path)
        try:
            check_scored(existing, records, names, extra_outputs)
        except ScoringError as error:
            log.info("%s exists but is not this job's result (%s); scoring again", out_path, error)
        else:
            log.info("%s already holds every record scored by %s; nothing to do", out_path, names)
            return existing
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = _read_journal(journal) if journal.exists() else []
    _check_prefix(done, records, journal)
    for record in done:
        if missing_scores(record, names, extra_outputs):
            raise ScoringError(
                f"{journal}: record {record.id!r} lacks {missing_scores(record, names, extra_outputs)[:3]}: the journal "
                "was written with other metrics; delete it (or pass resume=false) to score from the start"
            )
    if done:
        log.info("resuming from %s: %d of %d records already scored", journal, len(done), len(records))
    scored = list(done)
    with tqdm(
        total=len(records), initial=len(done), desc="scoring", unit="record", disable=not show_progress
    ) as bar:
        for start in range(len(done), len(records), batch_records):
            chunk = _score_chunk(records[start : start + batch_records], metrics, extra_outputs)
            _append(journal, chunk)
            scored.extend(chunk)
            bar.update(len(chunk))
    check_scored(scored, records, names, extra_outputs)
    write_jsonl_atomic(out_path, (r.to_dict() for r in scored))
    journal.unlink(missing_ok=True)
    log.info("wrote %d scored records to %s", len(scored), out_path)
    return scored


__all__ = [
    "ScoringError",
    "check_scored",
    "extra_scores_key",
    "journal_path",
    "missing_scores",
    "score_split",
]
