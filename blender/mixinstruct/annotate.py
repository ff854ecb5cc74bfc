"""The build's last steps on one split: score the candidates, judge them, each resumable and marked done.

Each step reads one records file and writes another (temp file + rename), then a marker beside it:
`<split>.done.json` with the step's key (a digest of everything the output depends on), the record count
and the file's sha256. A step's output counts as complete only when its marker holds the current key and
the file's bytes, so a killed run (a journal, a temp file, an output without marker) or changed settings
are redone, and nothing else is.

Scoring resumes from `blender.metrics.scoring`'s journal when the journal was written for the same key
(`<split>.pending.json` records the key a run started with); judging resumes through the judge's answer
cache, so a rerun after a failure pays only for pairs without an answer.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from blender.files import file_digest, json_digest, write_json_atomic, write_jsonl_atomic
from blender.metrics.base import ReferenceMetric
from blender.metrics.judge import JudgeSettings, JudgeTally, judge_split
from blender.metrics.scoring import score_split
from blender.records.loading import read_jsonl

log = logging.getLogger(__name__)

# Metric settings that change no score: where and how fast it runs.
_METRIC_PLACEMENT_KEYS = ("batch_size", "device", "show_progress")
# Judge settings that shape the requests (and so the labels); the rest is transport, retries and pricing.
_JUDGE_SHAPING_FIELDS = (
    "model",
    "system_prompt",
    "prompt_template",
    "temperature",
    "max_tokens",
    "stop",
    "extra_body",
    "both_orders",
    "seed",
    "dedup_repeat",
)


def metric_set_key(metric_set: Mapping[str, Any]) -> str:
    """Digest of a metric set config (`conf/metrics/*.yaml`), without the settings that change no score."""
    shaping = {
        name: {k: v for k, v in (node or {}).items() if k not in _METRIC_PLACEMENT_KEYS}
        for name, node in metric_set.items()
        if node is not None
    }
    return json_digest(shaping)


def judge_settings_key(settings: JudgeSettings) -> str:
    """Digest of the judge settings that shape its labels (not its endpoint, retries, cache or prices)."""
    return json_digest({name: getattr(settings, name) for name in _JUDGE_SHAPING_FIELDS})


def marker_path(out_path: str | os.PathLike) -> Path:
    """`<split>.done.json` beside `<split>.jsonl(.gz)`."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name.split(".", 1)[0] + ".done.json")


def step_complete(out_path: str | os.PathLike, key: str) -> bool:
    """Whether `out_path` was finished for `key` and is unchanged since.

    Args:
        out_path: the step's output file.
        key: the digest of everything the output depends on.
    Returns:
        True only when the marker exists, holds `key`, and matches the file's bytes.
    """
    out_path, marker = Path(out_path), marker_path(out_path)
    if not out_path.is_file() or not marker.is_file():
        return False
    try:
        done = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    return done.get("key") == key and done.get("file_sha256") == file_digest(out_path)


def read_marker(out_path: str | os.PathLike) -> dict[str, Any]:
    """The marker's contents (key, n_records, file digest and what the step added)."""
    return json.loads(marker_path(out_path).read_text())


def _mark_complete(out_path: Path, key: str, n_records: int, **info: Any) -> None:
    # Written after the output's rename: a marker always describes a whole file.
    write_json_atomic(
        marker_path(out_path),
        {"key": key, "n_records": n_records, "file_sha256": file_digest(out_path), **info},
    )


def score_file(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    metrics: Mapping[str, ReferenceMetric],
    key: str,
    batch_records: int = 16,
    show_progress: bool = True,
) -> int:
    """Score every candidate of a records file and write the result with its marker.

    A journal left by a killed run is resumed when that run had the same `key`; otherwise scoring starts over.

    Args:
        in_path: the records to score.
        out_path: where the scored records go (`.jsonl` or `.jsonl.gz`).
        metrics: `{name: metric}` from `build_metrics`.
        key: the digest of the input and the metric set.
        batch_records: records per scoring chunk (the most a kill loses).
        show_progress: draw a bar.
    Returns:
        The number of records scored.
    """
    out_path = Path(out_path)
    pending = out_path.with_name(out_path.name.split(".", 1)[0] + ".pending.json")
    resume = pending.is_file() and json.loads(pending.read_text()).get("key") == key
    if not resume:
        # A journal or an output from other settings must not be taken as this run's.
        write_json_atomic(pending, {"key": key})
    records = read_jsonl(in_path)
    scored = score_split(
        records, metrics, out_path, batch_records=batch_records, resume=resume, show_progress=show_progress
    )
    _mark_complete(out_path, key, len(scored), metrics=list(metrics))
    pending.unlink(missing_ok=True)
    return len(scored)


def judge_file(
    in_path: str | os.PathLike, out_path: str | os.PathLike, settings: JudgeSettings, key: str
) -> JudgeTally:
    """Add the judge's `cmp_results` to every record of a file and write the result with its marker.

    Args:
        in_path: the records to judge (their `cmp_results`, if any, are replaced).
        out_path: where the judged records go.
        settings: the judge.
        key: the digest of the input and the judge's shaping settings.
    Returns:
        What this run spent (cached answers cost nothing).
    Raises:
        JudgeError: a pair got no label after the judge's retries; answers received are cached.
    """
    out_path = Path(out_path)
    records = read_jsonl(in_path)
    cmp_results, tally = judge_split(records, settings)
    for record, results in zip(records, cmp_results, strict=True):
        record.cmp_results = results
    write_jsonl_atomic(out_path, (r.to_dict() for r in records))
    n_pairs = sum(len(r) for r in cmp_results)
    _mark_complete(out_path, key, len(records), judge=settings.model, n_pairs=n_pairs, tally=asdict(tally))
    return tally


def render_build_card(card: dict[str, Any], mix_card_markdown: str) -> str:
    """The finished dataset's data card as Markdown: every stage's counts, then the mix's own card.

    Args:
        card: as `blender.mixinstruct.build` writes to `data_card.json`.
        mix_card_markdown: the mix's `DATA_CARD.md`.
    Returns:
        The Markdown text.
    """
    lines = [
        "# MixInstruct build: the finished dataset",
        "",
        "Built by `python -m blender.cli.build_data` (blender/mixinstruct/build.py): sources -> mix -> generate -> "
        "merge -> score -> judge -> finalize.",
        "",
        "## Counts per stage",
        "",
        "| stage | " + " | ".join(card["splits"]) + " |",
        "|---|" + "---:|" * len(card["splits"]),
    ]
    for stage, counts in card["stage_counts"].items():
        if counts and set(counts) <= set(
            card["splits"]
        ):  # sources count by source; skipped stages by nothing
            lines.append(f"| {stage} | " + " | ".join(str(counts.get(s, "-")) for s in card["splits"]) + " |")
    sources = ", ".join(f"{name} {n}" for name, n in card["stage_counts"]["sources"].items())
    lines += [
        "",
        f"Sources loaded: {sources}.",
        "",
        "## Candidates",
        "",
        f"{len(card['models'])} models, in candidate order: "
        + ", ".join(f"`{m}`" for m in card["models"])
        + ".",
        "",
        "## Reference metrics",
        "",
    ]
    scoring = card["scoring"]
    if scoring["metrics"]:
        lines.append(
            f"Every candidate of {', '.join(scoring['splits'])} has `scores` "
            + ", ".join(
                f"`{name}` ({node.get('_target_', '?')})" for name, node in scoring["metrics"].items()
            )
            + "."
        )
    else:
        lines.append("None (no metric set was given).")
    lines += ["", "## Judge", ""]
    judging = card["judging"]
    if judging is None:
        lines.append("None: no record has `cmp_results`.")
    else:
        lines.append(
            f"`{judging['model']}` ({judging['base_url']}) judged every candidate pair of "
            f"{', '.join(judging['splits'])} into `cmp_results`, one random A/B order per pair"
            + (" (both orders)" if judging["both_orders"] else "")
            + "."
        )
        for split, done in judging["per_split"].items():
            tally = done["tally"]
            lines.append(
                f"- {split}: {done['n_pairs']} pairs; the last run paid {tally['paid_calls']} calls, "
                f"{tally['cache_hits']} from cache, estimated cost {tally['cost']:.4f}"
            )
    lines += ["", "## Files", ""]
    lines += [
        f"- `{name}`: {card['stage_counts']['final'][split]} records" for split, name in card["files"].items()
    ]
    lines += ["", "---", "", mix_card_markdown.replace("# MixInstruct build: data card", "# The mix", 1)]
    return "\n".join(lines)


def check_splits(splits: Sequence[str], within: Sequence[str], what: str) -> None:
    """Fail unless every split of `splits` is one of `within`."""
    unknown = [s for s in splits if s not in within]
    if unknown:
        raise ValueError(f"{what}: splits {unknown} are not among the generated splits {list(within)}")


__all__ = [
    "check_splits",
    "judge_file",
    "judge_settings_key",
    "marker_path",
    "metric_set_key",
    "read_marker",
    "render_build_card",
    "score_file",
    "step_complete",
]
