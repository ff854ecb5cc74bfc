"""The ranker's top-K per instruction, computed once per (ranker, data, split) and cached on disk.

GenFuser reads the K candidates a trained ranker ranks highest (PAPER.md §4b, §6: PairRanker's full N×N matrix,
MaxLogits, `get_topk_candidates_from_ranks`). The full matrix costs N(N−1) forward passes per instruction
(110 for N = 11), so the whole ranking of every split is stored (best first) and any K reads it; a ranker's
saved evaluation matrices (`<run>/eval/pair_logits_<data>_<split>.npz`) are reused when they match. A pointwise
ranker (the listwise ranker, SummaReranker, ...) ranks by its N scores (N passes), its saved
`candidate_scores_<data>_<split>.npz` reused the same way.
`pair_orders="one"` halves the cost of a split with no saved matrices (one order of each pair, balanced and
shuffled per instruction, the other read as its negation); on alpaca_blend_modern val its MaxLogits picks
score as well as the full matrix's on average (docs/results/fuser.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blender.aggregation import get_aggregation, pair_orders
from blender.distributed import barrier, is_main_process, map_sharded
from blender.rankers.registry import ranker_identity
from blender.rankers.saved_scores import WEIGHTS_FILES, read_candidate_scores, read_pair_logits
from blender.records.schema import Record

log = logging.getLogger(__name__)

# A cache row's "pair_orders" for a pointwise ranker's ranking: complete (no pairs), usable for any request.
POINTWISE = "pointwise"


class RankerNotFoundError(FileNotFoundError):
    """No ranker checkpoint to take the top-K from; the message says how to get one."""


def find_ranker_checkpoint(checkpoint: str | os.PathLike | None, runs_dir: str | os.PathLike) -> Path:
    """`checkpoint` when given, else the newest `<runs_dir>/*/best` (what `make train-ranker` writes).

    Raises:
        RankerNotFoundError: the folder does not exist, or there is no trained ranker at all.
    """
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_dir():
            raise RankerNotFoundError(f"topk.ranker_checkpoint={str(path)!r}: no such folder")
        return path
    found = sorted(Path(runs_dir).glob("*/best"), key=lambda p: p.stat().st_mtime, reverse=True)
    if not found:
        raise RankerNotFoundError(
            f"no trained ranker under {runs_dir}/*/best to take the top-K from: run `make train-ranker` first, "
            "or pass topk.ranker_checkpoint=path/to/best (or topk.selection=random for the random-K ablation)"
        )
    return found[0]


def rankings_from_scores(scores: Sequence[np.ndarray]) -> list[list[int]]:
    """Per instruction, candidate indices best first; ties keep the candidates' order (stable sort).

    Example: scores [1, 3, 3, 0] give [1, 2, 0, 3].
    """
    return [[int(k) for k in np.argsort(-np.asarray(s, dtype=float), kind="stable")] for s in scores]


def random_rankings(records: Sequence[Record], seed: int) -> list[list[int]]:
    """The random-K ablation: a uniform random order of each instruction's candidates (seeded per record)."""
    rankings = []
    for record in records:
        digest = hashlib.sha256(f"{seed}\0{record.id}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        rankings.append([int(k) for k in rng.permutation(len(record.candidates))])
    return rankings


def _ranker_key(checkpoint: Path, aggregation: str) -> str:
    """Changes when the ranker's folder, its weights or the aggregation change."""
    digest = hashlib.sha256()
    digest.update(str(checkpoint.resolve()).encode())
    for name in WEIGHTS_FILES:
        weights = checkpoint / name
        if weights.is_file():
            stat = weights.stat()
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    digest.update(aggregation.encode())
    return digest.hexdigest()[:16]


def _record_key(record: Record) -> str:
    """Changes when the record's candidates (models or texts) change."""
    digest = hashlib.sha256()
    for candidate in record.candidates:
        digest.update(candidate.model.encode() + b"\0" + candidate.text.encode() + b"\0")
    return digest.hexdigest()[:16]


def _ranked(scores: np.ndarray) -> dict:
    return {"ranking": rankings_from_scores([scores])[0], "scores": [float(v) for v in scores]}


def _read_cache(path: Path) -> dict[str, dict]:
    """id -> {"key", "ranking"} of a cache file; a torn last line (a kill mid-append) is ignored."""
    cached: dict[str, dict] = {}
    if not path.is_file():
        return cached
    lines = path.read_bytes().splitlines(keepends=True)
    for line_no, line in enumerate(lines, start=1):
        try:
            if not line.endswith(b"\n"):
                raise ValueError("no newline at the end")
            row = json.loads(line)
        except ValueError as error:
            if line_no == len(lines):
                log.warning(
                    "%s:%d: torn last line (%s) ignored; those records are ranked again", path, line_no, error
                )
                break
            raise ValueError(
                f"{path}:{line_no}: corrupt top-K cache line ({error}); delete the file"
            ) from None
        cached[row["id"]] = row
    return cached


def _append_cache(path: Path, rows: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        handle.write(b"".join(json.dumps(r).encode() + b"\n" for r in rows))
        handle.flush()
        # A chunk counts as done once it is on disk: a kill after this loses nothing.
        os.fsync(handle.fileno())


@dataclass
class TopKSettings:
    """Where the fuser's top-K come from (`topk` in config).

    Attributes:
        k: candidates fused per instruction (paper: 3).
        selection: "ranker" (a trained ranker's ranking; the paper's is PairRanker's) or "random" (the ablation).
        ranker_checkpoint: the ranker folder; None: the newest `<ranker_runs_dir>/*/best`.
        ranker_runs_dir: where `make train-ranker` writes its runs.
        aggregation: how a pairwise ranker's N×N matrix becomes a ranking (paper: max_logits); a pointwise
            ranker ranks by its scores.
        pair_orders: how a matrix is computed when no saved one exists: "both" (the paper: N(N−1) passes per
            instruction) or "one" (a balanced half, `blender.aggregation.pair_orders`). A ranker evaluation's
            saved full matrices are used whole either way. `make train-fuser` asks "one" of the train split
            only, when configured so.
        cache_dir: where the rankings are cached.
        seed: the random ablation's seed.
        chunk_records: instructions ranked between two cache appends (what a kill can lose).
    """

    k: int = 3
    selection: str = "ranker"
    ranker_checkpoint: str | None = None
    ranker_runs_dir: str = "outputs/train_ranker"
    aggregation: str = "max_logits"
    pair_orders: str = "one"
    cache_dir: str = "outputs/fuser_topk"
    seed: int = 0
    chunk_records: int = 20

    def __post_init__(self) -> None:
        if self.pair_orders not in ("both", "one"):  # caught with the config, before any work
            raise ValueError(
                f"topk.pair_orders={self.pair_orders!r}: pair orders are both (N(N-1) passes, the "
                "paper) or one (half of them)"
            )


def ranker_rankings(
    records: Sequence[Record],
    split: str,
    dataset: str,
    settings: TopKSettings,
    inference: object | None = None,
) -> tuple[list[list[int]], dict]:
    """Every candidate of every record ranked by the ranker (best first), cached per record.

    The cache (`<cache_dir>/<dataset>_<split>_<ranker key>.jsonl`) holds one line per record and grows chunk
    by chunk (`chunk_records` at a time), so a killed run resumes and a run on fewer records (data.limit_train)
    reuses what a larger one computed. A ranker evaluation's saved matrices of the same records are used first.

    Args:
        records: the split.
        split: its name (for the cache file and the saved-matrix lookup).
        dataset: the data config's name.
        settings: where the ranking comes from.
        inference: `InferenceSettings` for computing the full matrix.
    Returns:
        (rankings, provenance): provenance {"selection", "ranker_checkpoint", "ranker_label", "pairwise",
        "pair_orders", "cache", "computed", "seconds", "scores"} with "scores" the aggregated scores per record (None for rows cached without them).
    """
    if settings.selection == "random":
        return random_rankings(records, settings.seed), {"selection": "random", "seed": settings.seed}
    if settings.selection != "ranker":
        raise ValueError(f"topk.selection={settings.selection!r}; choose ranker or random")
    aggregate = get_aggregation(settings.aggregation)
    checkpoint = find_ranker_checkpoint(settings.ranker_checkpoint, settings.ranker_runs_dir)
    cache = (
        Path(settings.cache_dir) / f"{dataset}_{split}_{_ranker_key(checkpoint, settings.aggregation)}.jsonl"
    )
    started = time.perf_counter()
    cached = _read_cache(cache)
    keys = [_record_key(r) for r in records]
    # A row from both orders serves any request; a one-order row only a one-order request (rows written before
    # the setting existed are full matrices).
    usable = {"both", POINTWISE, settings.pair_orders}
    todo = [
        k
        for k, r in enumerate(records)
        if cached.get(r.id, {}).get("key") != keys[k] or cached[r.id].get("pair_orders", "both") not in usable
    ]
    label, pairwise = ranker_identity(checkpoint)
    provenance = {
        "selection": "ranker",
        "ranker_checkpoint": str(checkpoint),
        "ranker_label": label,
        "pairwise": pairwise,
        "aggregation": settings.aggregation,
        "cache": str(cache),
        "computed": len(todo),
    }
    if todo:
        saved, npz = _saved_scores(records, checkpoint, dataset, split, aggregate)
        if saved is not None:
            log.info("top-K of %s %s from the ranker's saved scores %s", dataset, split, npz)
            if is_main_process():
                _append_cache(
                    cache,
                    [{"id": records[k].id, "key": keys[k], **saved[k]} for k in todo],
                )
            provenance["source"] = str(npz)
        else:
            _rank_in_chunks(records, todo, keys, checkpoint, pairwise, cache, settings, aggregate, inference)
            provenance["source"] = "full_matrix" if pairwise else "candidate_scores"
        barrier()  # the main process wrote the cache; every process reads it
        cached = _read_cache(cache)
    else:
        log.info("top-K of %s %s from the cache %s", dataset, split, cache)
    provenance["seconds"] = time.perf_counter() - started
    provenance["scores"] = [cached[r.id].get("scores") for r in records]
    provenance["pair_orders"] = sorted({cached[r.id].get("pair_orders", "both") for r in records})
    return [cached[r.id]["ranking"] for r in records], provenance


def _saved_scores(
    records: Sequence[Record], checkpoint: Path, dataset: str, split: str, aggregate: object
) -> tuple[list[dict] | None, Path | None]:
    """Cache rows from the ranker evaluation's saved scores of these records, when fresh: a pairwise ranker's
    matrices (both orders) or a pointwise ranker's scores; (None, None) when there are none."""
    eval_dir = checkpoint.parent / "eval"
    npz = eval_dir / f"pair_logits_{dataset}_{split}.npz"
    saved = read_pair_logits(npz, records, checkpoint)
    if saved is not None:
        return [{"pair_orders": "both", **_ranked(aggregate(m))} for m in saved.matrices], npz
    npz = eval_dir / f"candidate_scores_{dataset}_{split}.npz"
    scores = read_candidate_scores(npz, records, checkpoint)
    if scores is not None:
        return [{"pair_orders": POINTWISE, **_ranked(s)} for s in scores], npz
    return None, None


def _rank_in_chunks(
    records: Sequence[Record],
    todo: Sequence[int],
    keys: Sequence[str],
    checkpoint: Path,
    pairwise: bool,
    cache: Path,
    settings: TopKSettings,
    aggregate: object,
    inference: object | None,
) -> None:
    from blender.rankers.predict import InferenceSettings, full_matrices
    from blender.rankers.registry import load_ranker

    inference = inference or InferenceSettings()
    ranker = load_ranker(checkpoint)
    if pairwise:
        passes = len(pair_orders(len(records[todo[0]].candidates), settings.pair_orders))
        how = f"{settings.pair_orders} order(s) of each pair"
    else:
        passes, how = ranker.forward_passes(records[todo[0]]), "pointwise"
    log.info(
        "ranking %d %s instructions with %s (%s, %d passes each) for the fuser's top-K; cached in %s",
        len(todo),
        cache.stem,
        checkpoint,
        how,
        passes,
        cache,
    )

    def rows(part: Sequence[Record]) -> list[dict]:
        if pairwise:
            matrices = full_matrices(ranker, part, inference, settings.pair_orders)
            return [{"pair_orders": settings.pair_orders, **_ranked(aggregate(m))} for m in matrices]
        return [{"pair_orders": POINTWISE, **_ranked(s)} for s in ranker.score_records(part, inference)]

    for start in range(0, len(todo), settings.chunk_records):
        chunk = list(todo[start : start + settings.chunk_records])
        began = time.perf_counter()
        # Each process of a launched run ranks its shard of the chunk; the main one alone appends to the cache.
        ranked = map_sharded(rows, [records[k] for k in chunk])
        if not is_main_process():
            continue
        _append_cache(
            cache,
            [{"id": records[k].id, "key": keys[k], **row} for k, row in zip(chunk, ranked, strict=True)],
        )
        log.info(
            "top-K: %d/%d instructions ranked (%.1f s per instruction)",
            start + len(chunk),
            len(todo),
            (time.perf_counter() - began) / len(chunk),
        )


__all__ = [
    "RankerNotFoundError",
    "TopKSettings",
    "find_ranker_checkpoint",
    "random_rankings",
    "rankings_from_scores",
    "ranker_rankings",
]
