"""Paired differences between two scored answer sets of the same records (the fine-tuned fuser vs zero-shot).

The bootstrap resamples instructions, so both answer sets are resampled together and the interval is of the
mean per-instruction difference (the same indices as Table 2's intervals, for the same seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from blender.evaluation.ranking import bootstrap_indices, interval
from blender.metrics.scoring import extra_scores_key
from blender.records import Record


def paired_differences(
    records: Sequence[Record],
    first: str,
    second: str,
    metrics: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per metric: the mean of `first`'s and `second`'s scores, their difference and its 95% interval.

    Args:
        records: records whose `extra` holds both answer sets' scores (`extra["<field>_scores"]`).
        first: the record field of the first answers (e.g. "fused").
        second: the field of the second (e.g. "fused_zero_shot").
        metrics: score names.
        n_boot: bootstrap resamples.
        seed: bootstrap seed.
    Returns:
        {metric: {"first", "second", "difference", "difference_ci", "above_zero"}}; above_zero: the interval's
        lower end is above 0.
    """
    indices = bootstrap_indices(len(records), n_boot, seed)
    result = {}
    for metric in metrics:
        a = np.array([r.extra[extra_scores_key(first)][metric] for r in records], dtype=float)
        b = np.array([r.extra[extra_scores_key(second)][metric] for r in records], dtype=float)
        low, high = interval(a - b, indices)
        result[metric] = {
            "first": float(a.mean()),
            "second": float(b.mean()),
            "difference": float((a - b).mean()),
            "difference_ci": [low, high],
            "above_zero": bool(low > 0),
        }
    return result


def render_differences(differences: dict[str, dict[str, Any]], first: str, second: str, title: str) -> str:
    """The differences as a Markdown table."""
    lines = [
        f"## {title}",
        "",
        f"Mean per-instruction difference {first} − {second}; brackets: 95% paired "
        "bootstrap interval over instructions.",
        "",
        f"| metric | {first} | {second} | difference | interval above 0 |",
        "|---|---|---|---|---|",
    ]
    for metric, d in differences.items():
        low, high = d["difference_ci"]
        lines.append(
            f"| {metric} | {d['first']:.4f} | {d['second']:.4f} | {d['difference']:+.4f} "
            f"[{low:+.4f}, {high:+.4f}] | {'yes' if d['above_zero'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


__all__ = ["paired_differences", "render_differences"]
