"""Score fused answers beside the candidates: reference metrics, and GPT-Rank when a judge is configured.

The fused answer goes into `record.extra["fused"]`, its reference-metric scores into
`record.extra["fused_scores"]` (what `scoring.score_split(extra_outputs=["fused"])` writes), so Table 2 gets
its "PairRanker (K) + GenFuser" row through `extra_outputs`.

Placing a new text in the candidates' ranking: the judge compares the fused answer with each of the N
candidates (one pair each, A/B order drawn as for any pair), and its GPT-Rank is 1 + the number of candidates
judged strictly better than it (a "Same good"/"Same bad" tie is not better): the competition rank it gets
among the candidates when only its own comparisons are counted, so 1 means no candidate beats it. The
candidates' own ranks are left as they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from blender.files import read_jsonl_rows, write_jsonl_atomic
from blender.fuser.model import GenerationSettings, GenFuser
from blender.metrics.base import ReferenceMetric
from blender.metrics.scoring import extra_scores_key
from blender.records.schema import Candidate, Record

log = logging.getLogger(__name__)

FUSED_FIELD = "fused"
ZERO_SHOT_FIELD = "fused_zero_shot"
FUSED_MODEL = "genfuser"


def fused_row_name(
    k: int, selection: str = "ranker", zero_shot: bool = False, ranker_label: str = "PairRanker"
) -> str:
    """The Table 2 row: "PairRanker (K=3) + GenFuser" (the ranker's label: "Listwise (K=3) + GenFuser" for the
    listwise ranker's top-K), "Random (K=3) + GenFuser" for the ablation, with " (zero-shot)" for the pretrained
    fuser that was never trained on fusion."""
    name = f"{ranker_label if selection == 'ranker' else 'Random'} (K={k}) + GenFuser"
    return f"{name} (zero-shot)" if zero_shot else name


def fuse_records(
    fuser: GenFuser,
    records: Sequence[Record],
    rankings: Sequence[Sequence[int]],
    k: int,
    settings: GenerationSettings | None = None,
) -> list[str]:
    """One fused answer per record from its `k` best candidates by `rankings`, shown in rank order."""
    topk = [
        [record.candidates[i].text for i in ranking[:k]]
        for record, ranking in zip(records, rankings, strict=True)
    ]
    return fuser.generate([r.instruction for r in records], [r.input for r in records], topk, settings)


def decoding_id(settings: GenerationSettings) -> str:
    """What a fuser's answers depend on beside its weights: every decoding setting but the progress bar
    (a 12-digit hash, saved with the answers so that answers of other decoding are never reused)."""
    fields = {k: v for k, v in asdict(settings).items() if k != "show_progress"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def save_fused(
    path: str | Path,
    records: Sequence[Record],
    rankings: Sequence[Sequence[int]],
    k: int,
    fused: Sequence[str],
    fuser_checkpoint: str,
    decoding: str,
) -> Path:
    """Write one line per record: id, the top-K models fused, the answer, the fuser and its `decoding_id`
    (atomically)."""
    rows = (
        {
            "id": r.id,
            "topk_models": [r.candidates[i].model for i in ranking[:k]],
            "fused": text,
            "fuser_checkpoint": fuser_checkpoint,
            "decoding": decoding,
        }
        for r, ranking, text in zip(records, rankings, fused, strict=True)
    )
    return write_jsonl_atomic(path, rows)


def load_fused(
    path: str | Path,
    records: Sequence[Record],
    rankings: Sequence[Sequence[int]],
    k: int,
    fuser_checkpoint: str,
    decoding: str,
) -> list[str] | None:
    """Answers saved by `save_fused` when they are of the same records, top-K, fuser and decoding; else None."""
    path = Path(path)
    if not path.is_file():
        return None
    rows = read_jsonl_rows(path)
    want = [
        (r.id, [r.candidates[i].model for i in ranking[:k]])
        for r, ranking in zip(records, rankings, strict=True)
    ]
    same_fuser = all(
        Path(row.get("fuser_checkpoint", "")).resolve() == Path(fuser_checkpoint).resolve() for row in rows
    )
    same_decoding = all(row.get("decoding") == decoding for row in rows)
    if [(row["id"], row["topk_models"]) for row in rows] != want or not (same_fuser and same_decoding):
        log.info(
            "%s holds other fused answers (records, top-K, fuser or decoding differ): generating again", path
        )
        return None
    log.info("fused answers from %s", path)
    return [row["fused"] for row in rows]


def attach_fused(
    records: Sequence[Record],
    fused: Sequence[str],
    metrics: Mapping[str, ReferenceMetric],
    field: str = FUSED_FIELD,
) -> list[Record]:
    """Copies of `records` with the fused answer and its reference-metric scores in `extra[field]` and
    `extra[field + "_scores"]`."""
    if len(records) != len(fused):
        raise ValueError(f"{len(records)} records but {len(fused)} fused answers")
    references = [r.output for r in records]
    scores = {name: metric.score(list(fused), references) for name, metric in metrics.items()}
    return [
        replace(
            record,
            extra={
                **record.extra,
                field: text,
                extra_scores_key(field): {n: float(v[e]) for n, v in scores.items()},
            },
        )
        for e, (record, text) in enumerate(zip(records, fused, strict=True))
    ]


class Judge(Protocol):
    def judge_records(self, records: Sequence[Any]) -> list[dict[str, str]]: ...


@dataclass
class _Pair:
    instruction: str
    input: str
    candidates: list[Candidate]


# Labels as seen from the first model of the pair key ("A" = the fused answer).
_BETTER_THAN_FUSED = {"B is better"}


def place_fused(labels: Sequence[str]) -> int:
    """GPT-Rank of the fused answer from its labels against each candidate (A = fused, B = the candidate):
    1 + the number of candidates judged strictly better.

    Example: ["A is better", "B is better", "Same good"] gives 2.
    """
    return 1 + sum(label in _BETTER_THAN_FUSED for label in labels)


def judge_fused(records: Sequence[Record], fused: Sequence[str], judge: Judge) -> list[int]:
    """GPT-Rank of each fused answer among its record's candidates, by the judge (see the module doc)."""
    pairs, owners = [], []
    for e, (record, text) in enumerate(zip(records, fused, strict=True)):
        for candidate in record.candidates:
            pairs.append(_Pair(record.instruction, record.input, [Candidate(FUSED_MODEL, text), candidate]))
            owners.append(e)
    results = judge.judge_records(pairs)
    labels: list[list[str]] = [[] for _ in records]
    for e, pair, result in zip(owners, pairs, results, strict=True):
        labels[e].append(result[f"{FUSED_MODEL},{pair.candidates[1].model}"])
    return [place_fused(found) for found in labels]


@dataclass
class FusedAnswers:
    """Fused answers of an evaluated split, ready for Table 2.

    Attributes:
        row_name: the Table 2 row ("PairRanker (K=3) + GenFuser").
        texts: one answer per record, in record order.
        gpt_ranks: each answer's GPT-Rank among the candidates by a judge (None without a judge).
        field: the record field the answers go in ("fused"; "fused_zero_shot" for the zero-shot row).
    """

    row_name: str
    texts: list[str]
    gpt_ranks: list[int] | None = None
    field: str = FUSED_FIELD

    def attach(self, records: Sequence[Record], metrics: Mapping[str, ReferenceMetric]) -> list[Record]:
        """`records` with the answers, their metric scores and (when judged) their GPT-Rank in `extra`."""
        attached = attach_fused(records, self.texts, metrics, self.field)
        if self.gpt_ranks is not None:
            attached = [
                replace(r, extra={**r.extra, f"{self.field}_gpt_rank": int(g)})
                for r, g in zip(attached, self.gpt_ranks, strict=True)
            ]
        return attached


__all__ = [
    "FUSED_FIELD",
    "ZERO_SHOT_FIELD",
    "FusedAnswers",
    "attach_fused",
    "fuse_records",
    "fused_row_name",
    "judge_fused",
    "decoding_id",
    "load_fused",
    "place_fused",
    "save_fused",
]
