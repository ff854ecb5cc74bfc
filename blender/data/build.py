"""Build MixInstruct from its sources as a list of stages, each skipped when its output is complete.

Stages so far: sources -> mix -> generate -> merge. Scoring (BLEU, BERTScore, BARTScore, ... into each
candidate's `scores`) and judging (pairwise `cmp_results` on test) come from other modules and plug in
as further `Stage`s after "merge": a name, a completeness check and a run function over `BuildSettings`.

Layout under `out_dir`:

    sources/<name>.jsonl, sources/manifest.json     the loaded sources (manifest written last)
    mix/{train,val,test}.jsonl, data_card.json, DATA_CARD.md
    candidates/<split>/<model>/shard-*.jsonl (+ .done.json)
    mixinstruct/{train,val,test}.jsonl, manifest.json   records with candidates, in model order
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from blender.data.backends import Backend, build_backend
from blender.data.generate import (
    CandidateModel,
    GenerationSettings,
    candidates_complete,
    fingerprint,
    generate_candidates,
    ids_digest,
    merge_candidates,
)
from blender.data.mix import SPLITS, MixSettings, build_mix, make_token_counter, write_mix
from blender.data.sources import SourceSpec, load_source
from blender.data.tiny_models import build_tiny_model
from blender.files import read_jsonl_rows, write_json_atomic, write_jsonl_atomic

logger = logging.getLogger(__name__)


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
        compress: write the final records as `.jsonl.gz`.
    """

    out_dir: str
    sources: list[SourceSpec]
    mix: MixSettings
    models: list[CandidateModel]
    generation: GenerationSettings
    generate_splits: list[str] = field(default_factory=lambda: list(SPLITS))
    limit: int | None = None
    compress: bool = False

    @property
    def root(self) -> Path:
        return Path(self.out_dir)


def build_settings_from_dict(cfg: dict[str, Any]) -> BuildSettings:
    """`BuildSettings` from a plain dict shaped like `conf/data_build/*.yaml` (resolved).

    Args:
        cfg: {"out_dir", "sources": {name: {path, hub_id, ...}}, "mix": {...}, "models": [{...}],
            "generation": {...}, "generate_splits", "limit", "compress"}.
    Returns:
        The settings.
    """
    sources = [SourceSpec(name=name, **(spec or {})) for name, spec in cfg["sources"].items()]
    return BuildSettings(
        out_dir=str(cfg["out_dir"]),
        sources=sources,
        mix=MixSettings(**cfg.get("mix", {})),
        models=[CandidateModel(**m) for m in cfg["models"]],
        generation=GenerationSettings(**cfg.get("generation", {})),
        generate_splits=list(cfg.get("generate_splits", SPLITS)),
        limit=cfg.get("limit"),
        compress=bool(cfg.get("compress", False)),
    )


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ---- sources -------------------------------------------------------------------------------------


def _sources_manifest(s: BuildSettings) -> Path:
    return s.root / "sources" / "manifest.json"


def sources_complete(s: BuildSettings) -> bool:
    """The sources were loaded with the current specs."""
    path = _sources_manifest(s)
    return path.exists() and json.loads(path.read_text()).get("specs_sha256") == _digest(
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
        _sources_manifest(s), {"counts": counts, "specs_sha256": _digest([asdict(x) for x in s.sources])}
    )


# ---- mix -----------------------------------------------------------------------------------------


def _mix_dir(s: BuildSettings) -> Path:
    return s.root / "mix"


def mix_complete(s: BuildSettings) -> bool:
    """The mix was written with the current settings (its data card is written last)."""
    card = _mix_dir(s) / "data_card.json"
    return card.exists() and json.loads(card.read_text()).get("settings") == json.loads(
        json.dumps(asdict(s.mix))
    )


def run_mix(s: BuildSettings) -> None:
    """Mix the loaded sources into splits and write them with the data card."""
    sources = {spec.name: read_jsonl_rows(s.root / "sources" / f"{spec.name}.jsonl") for spec in s.sources}
    splits, card = build_mix(sources, s.mix, make_token_counter(s.mix.tokenizer))
    write_mix(_mix_dir(s), splits, card)


def load_split(s: BuildSettings, split: str) -> list[dict[str, Any]]:
    """A mixed split, cut to `limit` records when set."""
    records = read_jsonl_rows(_mix_dir(s) / f"{split}.jsonl")
    return records[: s.limit] if s.limit is not None else records


# ---- generate ------------------------------------------------------------------------------------


def _gen_dir(s: BuildSettings, split: str) -> Path:
    return s.root / "candidates" / split


def _my_missing(s: BuildSettings) -> list[str]:
    """Unfinished shards that this worker owns."""
    g = s.generation
    missing = []
    for split in s.generate_splits:
        for entry in candidates_complete(load_split(s, split), s.models, g, _gen_dir(s, split)):
            index = int(entry.rsplit(" ", 1)[1])
            if index % g.num_workers == g.worker_index:
                missing.append(f"{split}: {entry}")
    return missing


def generate_complete(s: BuildSettings) -> bool:
    """Every shard this worker owns is finished, for every model and split."""
    return not _my_missing(s)


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
                load_split(s, split), model, s.generation, _gen_dir(s, split), backend_factory=get_backend
            )
            logger.info("%s / %s: %s", model.name, split, counts)
        # Free the model before the next one loads.
        loaded.clear()


# ---- merge ---------------------------------------------------------------------------------------


def _final_dir(s: BuildSettings) -> Path:
    return s.root / "mixinstruct"


def _merge_key(s: BuildSettings) -> str:
    """What the final records depend on: each model's settings and each split's ids."""
    split_ids = {split: ids_digest([r["id"] for r in load_split(s, split)]) for split in s.generate_splits}
    return _digest([[fingerprint(m, s.generation) for m in s.models], split_ids])


def merge_complete(s: BuildSettings) -> bool:
    """The final records were merged from the current models and settings."""
    manifest = _final_dir(s) / "manifest.json"
    return manifest.exists() and json.loads(manifest.read_text()).get("key") == _merge_key(s)


def run_merge(s: BuildSettings) -> None:
    """Attach candidates to each split's records and write `mixinstruct/<split>.jsonl`; the manifest goes last."""
    suffix = ".jsonl.gz" if s.compress else ".jsonl"
    counts = {}
    for split in s.generate_splits:
        merged = merge_candidates(load_split(s, split), s.models, s.generation, _gen_dir(s, split))
        write_jsonl_atomic(_final_dir(s) / f"{split}{suffix}", merged)
        counts[split] = len(merged)
    write_json_atomic(
        _final_dir(s) / "manifest.json",
        {
            "key": _merge_key(s),
            "counts": counts,
            "models": [m.name for m in s.models],
            "files": {k: k + suffix for k in counts},
        },
    )


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
]


def run_build(
    s: BuildSettings, stages: Sequence[Stage] = STAGES, only: Sequence[str] | None = None
) -> dict[str, str]:
    """Run the stages in order, skipping complete ones.

    Args:
        s: the build settings.
        stages: the stages, in order (append scoring / judging stages here).
        only: run just these stage names (the others are neither checked nor run); None for all.
    Returns:
        stage name -> "skipped" (already complete) or "ran".
    """
    names = [st.name for st in stages]
    unknown = set(only or []) - set(names)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; choose from {names}")
    status = {}
    for stage in stages:
        if only is not None and stage.name not in only:
            continue
        if stage.is_complete(s):
            logger.info("stage %s: complete, skipped", stage.name)
            status[stage.name] = "skipped"
            continue
        logger.info("stage %s: running", stage.name)
        stage.run(s)
        if not stage.is_complete(s):
            missing = _my_missing(s) if stage.name == "generate" else []
            raise RuntimeError(f"stage {stage.name} ran but its output is not complete {missing[:5]}")
        status[stage.name] = "ran"
    return status
