"""Candidate generation: one answer per instruction per model, resumable per model and shard.

Settings follow the paper's `generate_candidates.sh` (PAPER.md §5): top-p sampling with top_p 1.0,
temperature 0.7, repetition penalty 1.0, 256 new tokens, prompts of at most 256 tokens, one candidate
per model, float16.

Layout under `out_dir` (one folder per split in the build):

    <model>/shard-00003.jsonl       one line per instruction: {"id", "model", "text", "decoding_method", "scores"}
    <model>/shard-00003.done.json   the marker: count, sha256 of the shard's input ids, of the file, and of
                                    the settings that shape the answers

Both files are written to a temp name and renamed, the marker last. A shard counts as finished only when
its marker matches the shard's ids, the current settings and the file's bytes, so a killed run (a temp
file, a shard file without marker) or changed settings are regenerated and nothing else is.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from blender.files import file_digest, read_jsonl_rows, write_json_atomic, write_jsonl_atomic
from blender.mixinstruct.backends import Backend, build_backend
from blender.mixinstruct.candidate_models import CandidateGenerationSettings, CandidateModel
from blender.mixinstruct.templates import get_template, prompt_text

log = logging.getLogger(__name__)

# Called as hook(event, shard_index) after "shard_written" (file renamed, marker not yet) and
# "shard_done" (marker written); tests use it to kill a run at a known point.
ShardHook = Callable[[str, int], None]


# Settings that change no answer: where and how fast it runs.
_PLACEMENT_FIELDS = (
    "device",
    "worker_index",
    "num_workers",
    "tensor_parallel_size",
    "gpu_memory_utilization",
)


def fingerprint(model: CandidateModel, settings: CandidateGenerationSettings) -> str:
    """sha256 of everything that shapes a model's answers, so changed settings invalidate old shards."""
    shaping = {k: v for k, v in asdict(settings).items() if k not in _PLACEMENT_FIELDS}
    spec = {k: v for k, v in asdict(model).items() if k != "tiny"}
    spec["template"] = model.template_name
    shaping["backend"] = model.backend or settings.backend
    return hashlib.sha256(json.dumps([spec, shaping], sort_keys=True).encode()).hexdigest()


def ids_digest(ids: Sequence[str]) -> str:
    """sha256 of a shard's input ids, in order."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def shard_paths(out_dir: str | Path, model_name: str, index: int) -> tuple[Path, Path]:
    """(shard file, marker) of shard `index` of a model."""
    folder = Path(out_dir) / model_name.replace("/", "__")
    return folder / f"shard-{index:05d}.jsonl", folder / f"shard-{index:05d}.done.json"


def shard_records(records: Sequence[dict[str, Any]], shard_size: int) -> list[Sequence[dict[str, Any]]]:
    """Consecutive shards of `shard_size` records (the last may be shorter)."""
    return [records[i : i + shard_size] for i in range(0, len(records), shard_size)]


def shard_is_complete(
    out_dir: str | Path,
    model: CandidateModel,
    settings: CandidateGenerationSettings,
    index: int,
    ids: Sequence[str],
) -> bool:
    """Whether shard `index` is finished for these ids and settings.

    Args:
        out_dir: the split's generation folder.
        model: the model.
        settings: the generation settings.
        index: the shard index.
        ids: the shard's input ids, in order.
    Returns:
        True only when the marker exists and matches the ids, the settings' fingerprint and the file's bytes.
    """
    path, marker = shard_paths(out_dir, model.name, index)
    if not marker.exists() or not path.exists():
        return False
    try:
        done = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    if done.get("ids_sha256") != ids_digest(ids) or done.get("n_records") != len(ids):
        return False
    if done.get("fingerprint") != fingerprint(model, settings):
        log.warning("%s shard %d: settings changed since it was generated; regenerating", model.name, index)
        return False
    return done.get("file_sha256") == file_digest(path)


def build_prompt_ids(
    records: Sequence[dict[str, Any]],
    tokenizer: Any,
    model: CandidateModel,
    settings: CandidateGenerationSettings,
) -> list[list[int]]:
    """Token ids of each record's prompt, as the model should see it.

    The user's text (`prompt_text`) is cut to `prompt_max_tokens` tokens, then wrapped in the tokenizer's
    chat template when it has one and `prefer_tokenizer_chat_template` is set, else in the model's named
    template.

    Args:
        records: records with "instruction" and "input".
        tokenizer: the model's tokenizer.
        model: the model (its template).
        settings: generation settings.
    Returns:
        One list of token ids per record.
    """
    use_chat_template = settings.prefer_tokenizer_chat_template and getattr(tokenizer, "chat_template", None)
    template = get_template(model.template_name)
    prompts = []
    for record in records:
        text = prompt_text(record)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > settings.prompt_max_tokens:
            # Cutting the user's text rather than the wrapped prompt keeps the assistant tag at the end.
            text = tokenizer.decode(ids[: settings.prompt_max_tokens])
        if use_chat_template:
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
            # The chat template writes its own BOS and markers.
            prompts.append(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        else:
            prompts.append(tokenizer(template.render(text))["input_ids"])
    return prompts


def stop_criteria(
    tokenizer: Any, model: CandidateModel, use_chat_template: bool
) -> tuple[list[int], list[str]]:
    """(stop token ids, stop strings) for a model, as the original's `get_stop_str_and_ids`.

    EOS always stops. A template stop string that is a special token of the tokenizer stops as a token too.
    """
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if use_chat_template:
        return sorted(ids), []
    template = get_template(model.template_name)
    specials = set(tokenizer.all_special_tokens)
    vocab_size = len(tokenizer)
    ids.update(i for i in template.stop_token_ids if i < vocab_size)
    for stop in template.stop_strings:
        if stop in specials:
            ids.add(tokenizer.convert_tokens_to_ids(stop))
    if template.stop_on_special_tokens:
        ids.update(tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens)
    return sorted(ids), list(template.stop_strings)


def generate_candidates(
    records: Sequence[dict[str, Any]],
    model: CandidateModel,
    settings: CandidateGenerationSettings,
    out_dir: str | Path,
    backend_factory: Callable[[], Backend] | None = None,
    hook: ShardHook | None = None,
) -> dict[str, int]:
    """Generate one answer per record with one model, shard by shard, skipping finished shards.

    Args:
        records: the instructions (`id`, `instruction`, `input`), in a fixed order.
        model: the model.
        settings: generation settings (this worker's shards are i % num_workers == worker_index).
        out_dir: the split's generation folder.
        backend_factory: returns the back end; called only when a shard needs work, so a finished model is
            never loaded. None builds one with `build_backend`.
        hook: called after each shard's file and marker are written.
    Returns:
        Counts: {"shards", "mine", "skipped", "generated"}.
    """
    shards = shard_records(records, settings.shard_size)
    mine = [i for i in range(len(shards)) if i % settings.num_workers == settings.worker_index]
    todo = [
        i for i in mine if not shard_is_complete(out_dir, model, settings, i, [r["id"] for r in shards[i]])
    ]
    counts = {"shards": len(shards), "mine": len(mine), "skipped": len(mine) - len(todo), "generated": 0}
    if not todo:
        log.info("%s: all %d shards done", model.name, len(mine))
        return counts
    backend = backend_factory() if backend_factory else build_backend(model, settings)
    tokenizer = backend.tokenizer
    use_chat_template = bool(
        settings.prefer_tokenizer_chat_template and getattr(tokenizer, "chat_template", None)
    )
    stop_ids, stop_strings = stop_criteria(tokenizer, model, use_chat_template)
    fp = fingerprint(model, settings)
    for i in todo:
        shard = shards[i]
        prompt_ids = build_prompt_ids(shard, tokenizer, model, settings)
        generations = backend.generate(prompt_ids, settings.seed + i, stop_ids, stop_strings)
        rows = [
            {
                "id": r["id"],
                "model": model.name,
                "text": g.text,
                "decoding_method": settings.decoding_method,
                "scores": {"logprobs": g.logprob},
            }
            for r, g in zip(shard, generations, strict=True)
        ]
        path, marker = shard_paths(out_dir, model.name, i)
        write_jsonl_atomic(path, rows)
        if hook:
            hook("shard_written", i)
        write_json_atomic(
            marker,
            {
                "model": model.name,
                "shard": i,
                "n_records": len(shard),
                "ids_sha256": ids_digest([r["id"] for r in shard]),
                "file_sha256": file_digest(path),
                "fingerprint": fp,
                "template": "tokenizer chat template" if use_chat_template else model.template_name,
            },
        )
        counts["generated"] += 1
        log.info("%s: shard %d/%d done (%d answers)", model.name, i + 1, len(shards), len(rows))
        if hook:
            hook("shard_done", i)
    return counts


def candidates_complete(
    records: Sequence[dict[str, Any]],
    models: Sequence[CandidateModel],
    settings: CandidateGenerationSettings,
    out_dir: str | Path,
) -> list[str]:
    """What is still missing for a split: an empty list when every shard of every model is finished."""
    shards = shard_records(records, settings.shard_size)
    missing = []
    for model in models:
        for i, shard in enumerate(shards):
            if not shard_is_complete(out_dir, model, settings, i, [r["id"] for r in shard]):
                missing.append(f"{model.name} shard {i}")
    return missing


def merge_candidates(
    records: Sequence[dict[str, Any]],
    models: Sequence[CandidateModel],
    settings: CandidateGenerationSettings,
    out_dir: str | Path,
) -> list[dict[str, Any]]:
    """Attach every model's answer to each record, in the fixed order of `models`.

    Args:
        records: the split's records, in the order they were sharded.
        models: the models, in candidate order.
        settings: the generation settings the shards were made with.
        out_dir: the split's generation folder.
    Returns:
        Records `{"id", "instruction", "input", "output", "candidates": [{"model", "text",
        "decoding_method", "scores"}, ...]}`.
    Raises:
        RuntimeError: naming the unfinished shards, when some are not finished.
    """
    missing = candidates_complete(records, models, settings, out_dir)
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise RuntimeError(f"{out_dir}: {len(missing)} shards are not finished: {shown}")
    n_shards = len(shard_records(records, settings.shard_size))
    merged = [dict(r, candidates=[]) for r in records]
    for model in models:
        rows = [
            row for i in range(n_shards) for row in read_jsonl_rows(shard_paths(out_dir, model.name, i)[0])
        ]
        for record, row in zip(merged, rows, strict=True):
            if row["id"] != record["id"]:
                raise RuntimeError(
                    f"{model.name}: answer for {row['id']!r} where {record['id']!r} was expected"
                )
            record["candidates"].append({k: row[k] for k in ("model", "text", "decoding_method", "scores")})
    return merged
