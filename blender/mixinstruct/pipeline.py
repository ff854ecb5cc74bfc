"""The build's last stages (score, judge, finalize) and the runner of every stage in order.

The stages up to merge, the settings and the folder layout are in `blender.mixinstruct.build`; the per-split
steps (resumable scoring, judging, completion markers) in `blender.mixinstruct.annotate`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from blender.files import json_digest, write_dir_atomic, write_json_atomic, write_text_atomic
from blender.metrics.base import build_metrics
from blender.metrics.judge import JudgeError
from blender.mixinstruct.annotate import (
    judge_file,
    judge_settings_key,
    metric_set_key,
    read_marker,
    render_build_card,
    score_file,
    step_complete,
)
from blender.mixinstruct.build import (
    BuildSettings,
    generate_complete,
    load_split,
    merge_complete,
    merged_dir,
    missing_shards,
    mix_complete,
    mix_dir,
    run_generate,
    run_merge,
    run_mix,
    run_sources,
    sources_complete,
    sources_manifest_path,
)
from blender.mixinstruct.generate import fingerprint, ids_digest

log = logging.getLogger(__name__)


# ---- score and judge -----------------------------------------------------------------------------


def _stage_path(s: BuildSettings, stage: str, split: str) -> Path:
    return s.root / {"merge": "merged", "score": "scored", "judge": "judged"}[stage] / f"{split}{s.suffix}"


def split_keys(s: BuildSettings) -> dict[str, dict[str, str]]:
    """Each split's key after each stage that touches it: {split: {"merge", "score"?, "judge"?}}.

    The keys chain: a split's score key depends on its merged records (the models' settings and the
    split's ids) and the metric set; its judge key on what it judges and the judge's settings. The last
    key of a split names its finished records.
    """
    fingerprints = [fingerprint(m, s.generation) for m in s.models]
    keys = {}
    for split in s.generate_splits:
        chain = {
            "merge": json_digest([fingerprints, split, ids_digest([r["id"] for r in load_split(s, split)])])
        }
        last = chain["merge"]
        if s.metrics and split in s.score_splits:
            last = chain["score"] = json_digest([last, metric_set_key(s.metrics)])
        if s.judge is not None and split in s.judge_splits:
            last = chain["judge"] = json_digest([last, judge_settings_key(s.judge)])
        keys[split] = chain
    return keys


def _last_stage(chain: dict[str, str]) -> str:
    return list(chain)[-1]


def _todo(s: BuildSettings, stage: str) -> list[str]:
    return [
        split
        for split, chain in split_keys(s).items()
        if stage in chain and not step_complete(_stage_path(s, stage, split), chain[stage])
    ]


def score_complete(s: BuildSettings) -> bool:
    """Every split of `score_splits` is scored with the current metric set (True with no metric set)."""
    return not _todo(s, "score")


def run_score(s: BuildSettings) -> None:
    """Score the unfinished splits; the metrics are built once, before anything is written."""
    todo = _todo(s, "score")
    if not todo:
        return
    metrics = build_metrics(s.metrics)
    keys = split_keys(s)
    for split in todo:
        n_records = score_file(
            _stage_path(s, "merge", split),
            _stage_path(s, "score", split),
            metrics,
            keys[split]["score"],
            s.score_batch_records,
            s.show_progress,
        )
        log.info("score %s: %d records with %s", split, n_records, list(metrics))


def judge_complete(s: BuildSettings) -> bool:
    """Every split of `judge_splits` has the current judge's `cmp_results` (True with no judge)."""
    return not _todo(s, "judge")


def run_judge(s: BuildSettings) -> None:
    """Judge the unfinished splits' candidate pairs; answers already cached are not paid for again."""
    if s.judge is None:
        return
    keys = split_keys(s)
    for split in _todo(s, "judge"):
        source = "score" if "score" in keys[split] else "merge"
        tally = judge_file(
            _stage_path(s, source, split), _stage_path(s, "judge", split), s.judge, keys[split]["judge"]
        )
        log.info(
            "judge %s: %d paid calls, %d cache hits, estimated cost %.4f",
            split,
            tally.paid_calls,
            tally.cache_hits,
            tally.cost,
        )


def check_judge_key(s: BuildSettings) -> None:
    """Fail before any stage runs when the judge needs an API key that is not set and has work to do."""
    if s.judge is None or not s.judge.api_key_env or os.environ.get(s.judge.api_key_env):
        return
    try:
        if judge_complete(s):
            return
    except (OSError, ValueError):  # the earlier stages have not run yet
        pass
    raise JudgeError(
        f"the judge stage ({s.judge.model} at {s.judge.base_url}) needs ${s.judge.api_key_env}: set it, or "
        "drop the judge (~judge) to build without cmp_results, or use a local server (judge=local)"
    )


# ---- finalize ------------------------------------------------------------------------------------


def _final_dir(s: BuildSettings) -> Path:
    return s.root / "mixinstruct"


def _final_key(s: BuildSettings, keys: dict[str, dict[str, str]]) -> str:
    return json_digest([{split: chain[_last_stage(chain)] for split, chain in keys.items()}, s.suffix])


def finalize_complete(s: BuildSettings) -> bool:
    """The finished dataset holds every split's last stage output for the current keys."""
    manifest = _final_dir(s) / "manifest.json"
    if not manifest.is_file():
        return False
    done = json.loads(manifest.read_text())
    files_there = all((_final_dir(s) / name).is_file() for name in done.get("files", {}).values())
    return files_there and done.get("key") == _final_key(s, split_keys(s))


def _link_or_copy(src: Path, dst: Path) -> None:
    # Stage outputs are only ever replaced by rename, never rewritten in place: a hard link is a safe copy.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build_card(s: BuildSettings, keys: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The finished dataset's data card: counts per stage, models, metrics and judge used."""
    splits = list(keys)
    counts: dict[str, Any] = {
        "sources": json.loads(sources_manifest_path(s).read_text())["counts"],
        "mix": {
            k: v["count"]
            for k, v in json.loads((mix_dir(s) / "data_card.json").read_text())["splits"].items()
        },
        "merge": json.loads((merged_dir(s) / "manifest.json").read_text())["counts"],
    }
    markers = {
        stage: {
            split: read_marker(_stage_path(s, stage, split))
            for split, chain in keys.items()
            if stage in chain
        }
        for stage in ("score", "judge")
    }
    for stage, by_split in markers.items():
        counts[stage] = {split: m["n_records"] for split, m in by_split.items()}
    counts["final"] = counts["merge"]
    judging = None
    if s.judge is not None:
        judging = {
            "model": s.judge.model,
            "base_url": s.judge.base_url,
            "both_orders": s.judge.both_orders,
            "seed": s.judge.seed,
            "splits": list(markers["judge"]),
            "per_split": {
                k: {"n_pairs": m["n_pairs"], "tally": m["tally"]} for k, m in markers["judge"].items()
            },
        }
    return {
        "splits": splits,
        "files": {split: f"{split}{s.suffix}" for split in splits},
        "stage_counts": counts,
        "models": [m.name for m in s.models],
        "n_candidates": len(s.models),
        "generation": asdict(s.generation),
        "scoring": {"metrics": s.metrics, "splits": list(markers["score"])},
        "judging": judging,
        "last_stage": {split: _last_stage(chain) for split, chain in keys.items()},
        "mix_card": "../mix/data_card.json",
    }


def run_finalize(s: BuildSettings) -> None:
    """Gather each split's last output into `mixinstruct/` with the data card; the folder appears whole."""
    keys = split_keys(s)
    card = build_card(s, keys)
    mix_markdown = (mix_dir(s) / "DATA_CARD.md").read_text()

    def fill(folder: Path) -> None:
        for split, chain in keys.items():
            _link_or_copy(_stage_path(s, _last_stage(chain), split), folder / card["files"][split])
        write_json_atomic(folder / "data_card.json", card)
        write_text_atomic(folder / "DATA_CARD.md", render_build_card(card, mix_markdown))
        write_json_atomic(
            folder / "manifest.json",
            {"key": _final_key(s, keys), "files": card["files"], "counts": card["stage_counts"]["final"]},
        )

    write_dir_atomic(_final_dir(s), fill)
    log.info("wrote the finished dataset to %s: %s", _final_dir(s), card["stage_counts"]["final"])


# ---- stages --------------------------------------------------------------------------------------


@dataclass
class Stage:
    """One step of the build.

    Attributes:
        name: the stage's name (what `only` selects).
        is_complete: whether its output is already there for these settings.
        run: produces its output; afterwards `is_complete` must hold.
    """

    name: str
    is_complete: Callable[[BuildSettings], bool]
    run: Callable[[BuildSettings], None]


STAGES = [
    Stage("sources", sources_complete, run_sources),
    Stage("mix", mix_complete, run_mix),
    Stage("generate", generate_complete, run_generate),
    Stage("merge", merge_complete, run_merge),
    Stage("score", score_complete, run_score),
    Stage("judge", judge_complete, run_judge),
    Stage("finalize", finalize_complete, run_finalize),
]


def run_build(
    s: BuildSettings, stages: Sequence[Stage] = STAGES, only: Sequence[str] | None = None
) -> dict[str, str]:
    """Run the stages in order, skipping complete ones.

    Args:
        s: the build settings.
        stages: the stages, in order.
        only: run just these stage names (the others are neither checked nor run); None for all.
    Returns:
        stage name -> "skipped" (already complete) or "ran".
    """
    names = [st.name for st in stages]
    unknown = set(only or []) - set(names)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; choose from {names}")
    if only is None or "judge" in only:
        check_judge_key(s)
    status = {}
    for stage in stages:
        if only is not None and stage.name not in only:
            continue
        if stage.is_complete(s):
            log.info("stage %s: complete, skipped", stage.name)
            status[stage.name] = "skipped"
            continue
        log.info("stage %s: running", stage.name)
        stage.run(s)
        if not stage.is_complete(s):
            missing = missing_shards(s) if stage.name == "generate" else []
            raise RuntimeError(f"stage {stage.name} ran but its output is not complete {missing[:5]}")
        status[stage.name] = "ran"
    return status
