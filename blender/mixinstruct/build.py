"""Build MixInstruct from its sources as a list of stages, each skipped when its output is complete.

Stages: sources -> mix -> generate -> merge -> score -> judge -> finalize (PAPER.md §5). This module holds
the settings and the stages up to merge; `blender.mixinstruct.pipeline` the others and the runner. Each stage is a
name, a completeness check and a run function over `BuildSettings`. Layout under `out_dir`:

    sources/<name>.jsonl, sources/manifest.json     the loaded sources (manifest written last)
    mix/{train,val,test}.jsonl, data_card.json, DATA_CARD.md
    candidates/<split>/<model>/shard-*.jsonl (+ .done.json)
    merged/{train,val,test}.jsonl, manifest.json    records with candidates, in model order
    scored/<split>.jsonl (+ .done.json)             + `scores[<metric>]` on every candidate (score_splits)
    judged/<split>.jsonl (+ .done.json)             + `cmp_results` (judge_splits)
    mixinstruct/{train,val,test}.jsonl, data_card.json, DATA_CARD.md, manifest.json
                                                    the finished dataset (`load_candidates` reads it),
                                                    swapped in whole once every split is done

Every stage's output carries a key: a digest of what it depends on, chained from the generation settings
and each split's ids through the metric set and the judge's settings, so a change redoes what it touches
and nothing else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from blender.files import json_digest, read_jsonl_rows, write_json_atomic, write_jsonl_atomic
from blender.metrics.judge import JudgeSettings
from blender.mixinstruct.annotate import check_splits
from blender.mixinstruct.backends import Backend, build_backend
from blender.mixinstruct.candidate_models import CandidateGenerationSettings, CandidateModel
from blender.mixinstruct.generate import (
    candidates_complete,
    fingerprint,
    generate_candidates,
    ids_digest,
    merge_candidates,
)
from blender.mixinstruct.mix import SPLITS, MixSettings, build_mix, make_token_counter, write_mix
from blender.mixinstruct.sources import SourceSpec, load_source
from blender.mixinstruct.tiny_models import build_tiny_model

log = logging.getLogger(__name__)


@dataclass
class BuildSettings:
    """Everything one build needs.

    Attributes:
        out_dir: the build folder (layout in the module docstring).
        sources: where each source comes from; names must match `mix.caps`.
        mix: caps, filters, split sizes.
        models: the candidate models, in candidate order.
        generation: decoding, sharding, back end.
        generate_splits: the splits that get candidates.
        limit: generate for at most this many records per split (smoke runs); None for all.
        compress: write the records of merge, score, judge and the finished dataset as `.jsonl.gz`.
        metrics: the score stage's metric set, `{name: {_target_: ..., ...}}` as `conf/metrics/*.yaml`;
            empty for no scoring.
        score_splits: the splits whose candidates get reference-metric scores.
        score_batch_records: records per scoring chunk (one journal append: the most a kill loses).
        judge: the judge stage's judge; None for no `cmp_results`.
        judge_splits: the splits the judge labels (the paper: test only).
        show_progress: draw bars while scoring.
    """

    out_dir: str
    sources: list[SourceSpec]
    mix: MixSettings
    models: list[CandidateModel]
    generation: CandidateGenerationSettings
    generate_splits: list[str] = field(default_factory=lambda: list(SPLITS))
    limit: int | None = None
    compress: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    score_splits: list[str] = field(default_factory=lambda: list(SPLITS))
    score_batch_records: int = 16
    judge: JudgeSettings | None = None
    judge_splits: list[str] = field(default_factory=lambda: ["test"])
    show_progress: bool = True

    def __post_init__(self) -> None:
        check_splits(self.score_splits, self.generate_splits, "score_splits")
        check_splits(self.judge_splits, self.generate_splits, "judge_splits")

    @property
    def root(self) -> Path:
        return Path(self.out_dir)

    @property
    def suffix(self) -> str:
        return ".jsonl.gz" if self.compress else ".jsonl"


def build_settings_from_dict(
    cfg: dict[str, Any], metrics: Mapping[str, Any] | None = None, judge: JudgeSettings | None = None
) -> BuildSettings:
    """`BuildSettings` from a plain dict shaped like `conf/data_build/*.yaml` (resolved).

    Args:
        cfg: {"out_dir", "sources": {name: {path, hub_id, ...}}, "mix": {...}, "models": [{...}],
            "generation": {...}, "generate_splits", "limit", "compress", "score_splits",
            "score_batch_records", "judge_splits", "show_progress"}.
        metrics: the metric set (`conf/metrics/*.yaml`, resolved); None for no scoring.
        judge: the judge; None for no judging.
    Returns:
        The settings.
    """
    sources = [SourceSpec(name=name, **(spec or {})) for name, spec in cfg["sources"].items()]
    return BuildSettings(
        out_dir=str(cfg["out_dir"]),
        sources=sources,
        mix=MixSettings(**cfg.get("mix", {})),
        models=[CandidateModel(**m) for m in cfg["models"]],
        generation=CandidateGenerationSettings(**cfg.get("generation", {})),
        generate_splits=list(cfg.get("generate_splits", SPLITS)),
        limit=cfg.get("limit"),
        compress=bool(cfg.get("compress", False)),
        metrics={k: v for k, v in (metrics or {}).items() if v is not None},
        score_splits=list(cfg.get("score_splits", SPLITS)),
        score_batch_records=int(cfg.get("score_batch_records", 16)),
        judge=judge,
        judge_splits=list(cfg.get("judge_splits", ["test"])),
        show_progress=bool(cfg.get("show_progress", True)),
    )


# ---- sources -------------------------------------------------------------------------------------


def sources_manifest_path(s: BuildSettings) -> Path:
    return s.root / "sources" / "manifest.json"


def sources_complete(s: BuildSettings) -> bool:
    """The sources were loaded with the current specs."""
    path = sources_manifest_path(s)
    return path.exists() and json.loads(path.read_text()).get("specs_sha256") == json_digest(
        [asdict(x) for x in s.sources]
    )


def run_sources(s: BuildSettings) -> None:
    """Load every source and save it as `sources/<name>.jsonl`; the manifest goes last."""
    counts = {}
    for spec in s.sources:
        records = load_source(spec)
        write_jsonl_atomic(s.root / "sources" / f"{spec.name}.jsonl", records)
        counts[spec.name] = len(records)
    write_json_atomic(
        sources_manifest_path(s),
        {"counts": counts, "specs_sha256": json_digest([asdict(x) for x in s.sources])},
    )


# ---- mix -----------------------------------------------------------------------------------------


def mix_dir(s: BuildSettings) -> Path:
    return s.root / "mix"


def mix_complete(s: BuildSettings) -> bool:
    """The mix was written with the current settings (its data card is written last)."""
    card = mix_dir(s) / "data_card.json"
    return card.exists() and json.loads(card.read_text()).get("settings") == json.loads(
        json.dumps(asdict(s.mix))
    )


def run_mix(s: BuildSettings) -> None:
    """Mix the loaded sources into splits and write them with the data card."""
    sources = {spec.name: read_jsonl_rows(s.root / "sources" / f"{spec.name}.jsonl") for spec in s.sources}
    splits, card = build_mix(sources, s.mix, make_token_counter(s.mix.tokenizer))
    write_mix(mix_dir(s), splits, card)


def load_split(s: BuildSettings, split: str) -> list[dict[str, Any]]:
    """A mixed split, cut to `limit` records when set."""
    records = read_jsonl_rows(mix_dir(s) / f"{split}.jsonl")
    return records[: s.limit] if s.limit is not None else records


# ---- generate ------------------------------------------------------------------------------------


def candidates_dir(s: BuildSettings, split: str) -> Path:
    return s.root / "candidates" / split


def missing_shards(s: BuildSettings) -> list[str]:
    """Unfinished shards that this worker owns."""
    g = s.generation
    missing = []
    for split in s.generate_splits:
        for entry in candidates_complete(load_split(s, split), s.models, g, candidates_dir(s, split)):
            index = int(entry.rsplit(" ", 1)[1])
            if index % g.num_workers == g.worker_index:
                missing.append(f"{split}: {entry}")
    return missing


def generate_complete(s: BuildSettings) -> bool:
    """Every shard this worker owns is finished, for every model and split."""
    return not missing_shards(s)


def run_generate(s: BuildSettings) -> None:
    """Generate candidates model by model; each model is loaded at most once, for all splits."""
    for model in s.models:
        if model.tiny is not None:
            build_tiny_model(model.checkpoint, **model.tiny)
        loaded: list[Backend] = []

        def get_backend(model: CandidateModel = model, loaded: list[Backend] = loaded) -> Backend:
            if not loaded:
                loaded.append(build_backend(model, s.generation))
            return loaded[0]

        for split in s.generate_splits:
            counts = generate_candidates(
                load_split(s, split),
                model,
                s.generation,
                candidates_dir(s, split),
                backend_factory=get_backend,
            )
            log.info("%s / %s: %s", model.name, split, counts)
        # Free the model before the next one loads.
        loaded.clear()


# ---- merge ---------------------------------------------------------------------------------------


def merged_dir(s: BuildSettings) -> Path:
    return s.root / "merged"


def _merge_key(s: BuildSettings) -> str:
    """What the final records depend on: each model's settings and each split's ids."""
    split_ids = {split: ids_digest([r["id"] for r in load_split(s, split)]) for split in s.generate_splits}
    return json_digest([[fingerprint(m, s.generation) for m in s.models], split_ids])


def merge_complete(s: BuildSettings) -> bool:
    """The final records were merged from the current models and settings."""
    manifest = merged_dir(s) / "manifest.json"
    return manifest.exists() and json.loads(manifest.read_text()).get("key") == _merge_key(s)


def run_merge(s: BuildSettings) -> None:
    """Attach candidates to each split's records and write `merged/<split>.jsonl`; the manifest goes last."""
    suffix = s.suffix
    counts = {}
    for split in s.generate_splits:
        merged = merge_candidates(load_split(s, split), s.models, s.generation, candidates_dir(s, split))
        write_jsonl_atomic(merged_dir(s) / f"{split}{suffix}", merged)
        counts[split] = len(merged)
    write_json_atomic(
        merged_dir(s) / "manifest.json",
        {
            "key": _merge_key(s),
            "counts": counts,
            "models": [m.name for m in s.models],
            "files": {k: k + suffix for k in counts},
        },
    )
