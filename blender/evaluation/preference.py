"""Pairwise accuracy on preference pairs: the share of pairs whose chosen answer the ranker prefers.

For a PairRanker a pair counts as right when M[chosen, rejected] − M[rejected, chosen] > 0 (both orders, so
a lean towards a position cancels); for a pointwise ranker when s_chosen > s_rejected. A tie counts one half.
Also reported: Longest (the longer answer is taken as chosen), the judges' strongest bias and the bar a ranker
should clear, with 95% bootstrap intervals over pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blender.comparisons import pair_margins
from blender.distributed import is_main_process, map_sharded
from blender.evaluation.ranking import bootstrap_indices, interval
from blender.files import write_json_atomic, write_text_atomic
from blender.rankers.predict import InferenceSettings
from blender.rankers.registry import Ranker
from blender.records import Record, RecordError
from blender.records.preference import is_preference_record

log = logging.getLogger(__name__)


def correct(margins: np.ndarray) -> np.ndarray:
    """Per pair, 1 when the chosen answer wins, 0 when it loses, 0.5 on a tie."""
    return np.where(margins > 0, 1.0, np.where(margins < 0, 0.0, 0.5))


def preference_margins(ranker: Ranker, records: Sequence[Record], settings: InferenceSettings) -> np.ndarray:
    """[n] how much the ranker prefers each pair's chosen answer over its rejected one (> 0: right)."""
    bad = next((r.id for r in records if not is_preference_record(r)), None)
    if bad is not None:
        raise RecordError(f"record {bad!r} is not a preference pair (candidates chosen, rejected)")

    def margins(part: Sequence[Record]) -> list[float]:
        return list(
            pair_margins(ranker, part, [(e, 0, 1) for e in range(len(part))], "[A,B]+[B,A]", settings)
        )

    # Under a launched run each process scores its shard; every process gets all margins back, in order.
    return np.asarray(map_sharded(margins, records, "preference pairs"), dtype=np.float64)


def pairwise_accuracy(
    ranker: Ranker,
    records: Sequence[Record],
    settings: InferenceSettings | None = None,
    bootstrap_samples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Pairwise accuracy of a ranker on preference pairs, with Longest beside it.

    Returns:
        {"pairwise_accuracy", "interval", "longest_accuracy", "longest_interval", "n_pairs", "ties"}.
    """
    settings = settings or InferenceSettings(show_progress=False)
    margins = preference_margins(ranker, records, settings)
    right = correct(margins)
    longest = correct(
        np.array([len(r.candidates[0].text) - len(r.candidates[1].text) for r in records], dtype=float)
    )
    indices = bootstrap_indices(len(records), bootstrap_samples, seed)
    return {
        "pairwise_accuracy": float(right.mean()),
        "interval": interval(right, indices),
        "longest_accuracy": float(longest.mean()),
        "longest_interval": interval(longest, indices),
        "n_pairs": len(records),
        "ties": int((margins == 0).sum()),
    }


def write_preference_report(result: dict[str, Any], output_dir: Path, name: str, title: str) -> Path:
    """`<name>.json` and `<name>.md` (a two-row table: the ranker and Longest) in `output_dir`; returns the .md."""
    write_json_atomic(output_dir / f"{name}.json", result)
    low, high = result["interval"]
    long_low, long_high = result["longest_interval"]
    markdown = "\n".join(
        [
            f"# {title}",
            "",
            f"{result['n_pairs']} preference pairs; 95% bootstrap intervals over pairs; ties count one half "
            f"({result['ties']} ties).",
            "",
            "| Method | Pairwise accuracy |",
            "|---|---|",
            f"| {result.get('method', 'ranker')} | {result['pairwise_accuracy']:.3f} [{low:.3f}, {high:.3f}] |",
            f"| Longest | {result['longest_accuracy']:.3f} [{long_low:.3f}, {long_high:.3f}] |",
            "",
        ]
    )
    return write_text_atomic(output_dir / f"{name}.md", markdown)


def report_preference(
    ranker: Ranker,
    records: Sequence[Record],
    data: Any,
    split: str,
    output_dir: Path,
    checkpoint: str,
    report: Any,
) -> dict[str, Any]:
    """Pairwise accuracy on preference pairs (and Longest's), written as `pairwise_<data>_<split>.{json,md}`:
    what `make eval` reports for a `data.format: preference` split."""
    result = pairwise_accuracy(
        ranker, records, report.inference, report.evaluation.bootstrap_samples, report.evaluation.seed
    )
    label = getattr(ranker, "label", "PairRanker")
    result.update(method=label, dataset=data.name, split=split, checkpoint=checkpoint)
    low, high = result["interval"]
    title = f"{data.name} {split}: {label} ({checkpoint})"
    if not is_main_process():  # every process scored its shard; one writes the report
        return result
    markdown = write_preference_report(result, output_dir, f"pairwise_{data.name}_{split}", title)
    log.info(
        "%s: pairwise accuracy %.3f [%.3f, %.3f] on %d pairs (Longest %.3f); wrote %s",
        title,
        result["pairwise_accuracy"],
        low,
        high,
        result["n_pairs"],
        result["longest_accuracy"],
        markdown,
    )
    return result
