"""Mix the four instruction sets into MixInstruct's splits, step for step as `get_mixinstruct.py`.

The original (PAPER.md §5), in order:

1. per source: (ShareGPT only) drop outputs containing a ban word, shuffle with `random.seed(42)`,
   keep the first `cap` records (gpt4all 100k, dolly 15k, itwgpt4 52k, sharegpt 50k), append to the mix
   in the order gpt4all, dolly, itwgpt4, sharegpt;
2. drop exact duplicates, keeping the first (the key is the whole record, id included);
3. keep outputs with 10 < tokens < 128 and instruction+input with 5 <= tokens < 128
   (`chavinlo/alpaca-native` tokenizer, special tokens counted);
4. shuffle with seed 42 and cut val [:5000], test [5000:10000], train [10000:110000].

Every number is a field of `MixSettings` (mirrored by `conf/data_build/*.yaml`), and every count is logged
and saved in the data card beside the splits. With the original's settings and the same source files the
shuffles replay exactly: `random.Random(42).shuffle` draws what `random.seed(42); random.shuffle` drew.
"""

from __future__ import annotations

import logging
import random
import re
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from blender.files import write_json_atomic, write_jsonl_atomic, write_text_atomic

log = logging.getLogger(__name__)

# `get_mixinstruct.py`'s ban words, applied there to ShareGPT outputs as lower-cased substrings.
ORIGINAL_BAN_PHRASES = [
    "i'm sorry",
    "i'am here",
    "i'am ready",
    "sure",
    "okay",
    "ok",
    "yes",
    "no",
    "yeah",
    "nope",
    "yep",
    "yup",
    "no problem",
    "no worries",
    "how can i",
    "of course",
]

SPLITS = ("train", "val", "test")
# The fields a split record keeps; `source` is dropped because the id prefix already names it.
RECORD_FIELDS = ("id", "instruction", "input", "output")

TokenCounter = Callable[[Sequence[str]], list[int]]


@dataclass
class MixSettings:
    """How to mix the sources; the defaults are the original script's.

    Attributes:
        caps: source name -> records kept after its seeded shuffle. The order is the mixing order,
            which matters for the final shuffle (original: gpt4all, dolly, alpaca_gpt4, sharegpt).
        seed: seed of every shuffle (each source's and the final one), reset before each as the original.
        dedup_fields: the fields that make two records duplicates. The original keys on the whole record,
            id included, so it only drops repeated ids; `[instruction, input, output]` drops repeated content.
        min_output_tokens: shortest output kept, inclusive (original: `length > 10`).
        max_output_tokens: longest output kept, inclusive (original: `length < 128`).
        min_source_tokens: shortest instruction+input kept, inclusive (original: `length >= 5`).
        max_source_tokens: longest instruction+input kept, inclusive (original: `length < 128`).
        tokenizer: the tokenizer that counts tokens: a hub id / folder, or "whitespace" (words, for offline use).
        ban_phrases: an output containing one of these (lower-cased) is dropped.
        ban_sources: the sources the ban applies to, before their shuffle; None for every source.
            The original bans in ShareGPT only.
        ban_match: "substring" (the original: "no" also bans "know") or "word" (whole words only).
        n_val: records in val, the first cut of the final shuffle (original "dev").
        n_test: records in test, the next cut.
        n_train: records in train, the next cut; the rest are unused.
    """

    caps: dict[str, int] = field(
        default_factory=lambda: {"gpt4all": 100000, "dolly": 15000, "alpaca_gpt4": 52000, "sharegpt": 50000}
    )
    seed: int = 42
    dedup_fields: list[str] = field(default_factory=lambda: list(RECORD_FIELDS))
    min_output_tokens: int = 11
    max_output_tokens: int = 127
    min_source_tokens: int = 5
    max_source_tokens: int = 127
    tokenizer: str = "chavinlo/alpaca-native"
    ban_phrases: list[str] = field(default_factory=lambda: list(ORIGINAL_BAN_PHRASES))
    ban_sources: list[str] | None = field(default_factory=lambda: ["sharegpt"])
    ban_match: str = "substring"
    n_val: int = 5000
    n_test: int = 5000
    n_train: int = 100000

    def __post_init__(self) -> None:
        if self.ban_match not in ("substring", "word"):
            raise ValueError(f"ban_match must be 'substring' or 'word', got {self.ban_match!r}")
        unknown = set(self.dedup_fields) - set(RECORD_FIELDS)
        if unknown:
            raise ValueError(f"dedup_fields {sorted(unknown)} are not record fields {list(RECORD_FIELDS)}")
        self.caps = dict(self.caps)
        self.dedup_fields = list(self.dedup_fields)
        self.ban_phrases = list(self.ban_phrases)
        self.ban_sources = None if self.ban_sources is None else list(self.ban_sources)


def make_token_counter(tokenizer: str) -> TokenCounter:
    """A function that counts the tokens of each text.

    Args:
        tokenizer: "whitespace" (words; no download), or a hub id / folder for `AutoTokenizer`.
    Returns:
        texts -> token counts. A hub tokenizer counts special tokens too, as the original's
        `len(tokenizer.encode(text))` does.
    """
    if tokenizer == "whitespace":
        return lambda texts: [len(t.split()) for t in texts]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)

    def count(texts: Sequence[str]) -> list[int]:
        counts: list[int] = []
        # Chunks keep memory flat on the ~200k texts of a full build.
        for start in range(0, len(texts), 4096):
            counts.extend(len(ids) for ids in tok(list(texts[start : start + 4096]))["input_ids"])
        return counts

    return count


def has_banned_phrase(text: str, phrases: Sequence[str], match: str = "substring") -> bool:
    """Whether `text` contains one of `phrases`, case-insensitively.

    Args:
        text: an output.
        phrases: lower-case phrases.
        match: "substring" (any occurrence, the original's test) or "word" (on word boundaries).
    Returns:
        True when the text should be dropped.
    """
    lowered = text.lower()
    if match == "substring":
        return any(p in lowered for p in phrases)
    return any(re.search(r"(?<!\w)" + re.escape(p) + r"(?!\w)", lowered) for p in phrases)


def _by_source(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(r["source"] for r in records))


def _length_stats(lengths: Sequence[int]) -> dict[str, float]:
    if not lengths:
        return {"mean": 0.0, "min": 0, "max": 0}
    return {"mean": round(statistics.fmean(lengths), 2), "min": min(lengths), "max": max(lengths)}


def build_mix(
    sources: dict[str, list[dict[str, Any]]], settings: MixSettings, count_tokens: TokenCounter
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Mix, deduplicate, filter and split the sources.

    Args:
        sources: source name -> its records (`blender.mixinstruct.sources` output), each with a "source" field.
        settings: caps, filters and split sizes.
        count_tokens: texts -> token counts (`make_token_counter`).
    Returns:
        (splits, card): splits maps "train" / "val" / "test" to records with the fields `RECORD_FIELDS`;
        the card holds the settings and every count, overall and per source.
    """
    missing = [name for name in settings.caps if name not in sources]
    if missing:
        raise ValueError(f"caps name sources {missing} that were not loaded (loaded: {sorted(sources)})")
    card: dict[str, Any] = {"settings": asdict(settings), "sources": {}, "steps": []}

    def step(name: str, records: list[dict[str, Any]], before: int) -> None:
        card["steps"].append(
            {
                "step": name,
                "count": len(records),
                "removed": before - len(records),
                "by_source": _by_source(records),
            }
        )
        log.info("%-28s %7d records (-%d) %s", name, len(records), before - len(records), _by_source(records))

    mixed: list[dict[str, Any]] = []
    for name, cap in settings.caps.items():
        records = list(sources[name])
        counts = {"loaded": len(records)}
        if settings.ban_sources is None or name in settings.ban_sources:
            records = [
                r
                for r in records
                if not has_banned_phrase(r["output"], settings.ban_phrases, settings.ban_match)
            ]
            counts["banned"] = counts["loaded"] - len(records)
        # A fresh generator per source, as the original reseeds before each shuffle.
        random.Random(settings.seed).shuffle(records)
        records = records[:cap]
        counts["kept"] = len(records)
        card["sources"][name] = counts
        log.info("%s: %s (cap %d)", name, counts, cap)
        mixed.extend(records)
    step("mixed", mixed, len(mixed))

    seen: set[tuple[str, ...]] = set()
    deduped = []
    for r in mixed:
        key = tuple(r[f] for f in settings.dedup_fields)
        if key not in seen:
            seen.add(key)
            deduped.append(r)
    step("deduplicated", deduped, len(mixed))

    output_lengths = count_tokens([r["output"] for r in deduped])
    kept = [
        (r, n)
        for r, n in zip(deduped, output_lengths, strict=True)
        if settings.min_output_tokens <= n <= settings.max_output_tokens
    ]
    by_output = [r for r, _ in kept]
    step("output length filter", by_output, len(deduped))

    # The original counts instruction + input joined with no separator.
    source_lengths = count_tokens([r["instruction"] + r["input"] for r in by_output])
    final: list[dict[str, Any]] = []
    final_output_lengths: list[int] = []
    final_source_lengths: list[int] = []
    for (r, n_out), n_src in zip(kept, source_lengths, strict=True):
        if settings.min_source_tokens <= n_src <= settings.max_source_tokens:
            final.append(r)
            final_output_lengths.append(n_out)
            final_source_lengths.append(n_src)
    step("source length filter", final, len(by_output))

    random.Random(settings.seed).shuffle(final)
    cuts = {
        "val": (0, settings.n_val),
        "test": (settings.n_val, settings.n_val + settings.n_test),
        "train": (settings.n_val + settings.n_test, settings.n_val + settings.n_test + settings.n_train),
    }
    splits = {name: [{f: r[f] for f in RECORD_FIELDS} for r in final[a:b]] for name, (a, b) in cuts.items()}
    requested = {"train": settings.n_train, "val": settings.n_val, "test": settings.n_test}
    card["splits"] = {}
    for name in SPLITS:
        a, b = cuts[name]
        card["splits"][name] = {
            "count": len(splits[name]),
            "requested": requested[name],
            "by_source": _by_source(final[a:b]),
        }
        log.info("split %-5s %7d records (requested %d)", name, len(splits[name]), requested[name])
        if len(splits[name]) < requested[name]:
            log.warning(
                "split %s has %d records, fewer than the %d requested",
                name,
                len(splits[name]),
                requested[name],
            )
    card["unused_after_split"] = max(0, len(final) - sum(b - a for a, b in cuts.values()))
    card["token_lengths"] = {
        "output": _length_stats(final_output_lengths),
        "source": _length_stats(final_source_lengths),
    }
    return splits, card


def render_data_card(card: dict[str, Any]) -> str:
    """The data card as Markdown, for people: the settings and every count."""
    s = card["settings"]
    lines = [
        "# MixInstruct build: data card",
        "",
        "Built by `blender.mixinstruct.mix.build_mix` following LLM-Blender's `get_mixinstruct.py` (PAPER.md §5).",
        "",
        "## Sources",
        "",
        "| source | loaded | banned | kept (cap) |",
        "|---|---:|---:|---:|",
    ]
    for name, counts in card["sources"].items():
        lines.append(
            f"| {name} | {counts['loaded']} | {counts.get('banned', '-')} | {counts['kept']} ({s['caps'][name]}) |"
        )
    lines += ["", "## Steps", "", "| step | records | removed | by source |", "|---|---:|---:|---|"]
    for st in card["steps"]:
        by_source = ", ".join(f"{k} {v}" for k, v in st["by_source"].items())
        lines.append(f"| {st['step']} | {st['count']} | {st['removed']} | {by_source} |")
    lines += ["", "## Splits", "", "| split | records | requested | by source |", "|---|---:|---:|---|"]
    for name, sp in card["splits"].items():
        by_source = ", ".join(f"{k} {v}" for k, v in sp["by_source"].items())
        lines.append(f"| {name} | {sp['count']} | {sp['requested']} | {by_source} |")
    out, src = card["token_lengths"]["output"], card["token_lengths"]["source"]
    lines += [
        "",
        "## Settings",
        "",
        f"- tokenizer `{s['tokenizer']}`; output {s['min_output_tokens']}–{s['max_output_tokens']} tokens "
        f"(kept: mean {out['mean']}, min {out['min']}, max {out['max']}); instruction+input "
        f"{s['min_source_tokens']}–{s['max_source_tokens']} tokens (kept: mean {src['mean']}, min {src['min']}, max {src['max']})",
        f"- seed {s['seed']}; duplicates keyed on {s['dedup_fields']}",
        f"- ban ({s['ban_match']} match) in {s['ban_sources'] if s['ban_sources'] is not None else 'every source'}: "
        + ", ".join(f"`{p}`" for p in s["ban_phrases"]),
        "",
    ]
    return "\n".join(lines)


def write_mix(
    out_dir: str | Path, splits: dict[str, list[dict[str, Any]]], card: dict[str, Any], compress: bool = False
) -> Path:
    """Write the splits and the data card, each file atomically; the card goes last.

    Because `data_card.json` is written after every split, its presence means the mix is complete.

    Args:
        out_dir: the folder for `train.jsonl`, `val.jsonl`, `test.jsonl` (`.jsonl.gz` when `compress`),
            `data_card.json` and `DATA_CARD.md`.
        splits: from `build_mix`.
        card: from `build_mix`.
        compress: gzip the split files.
    Returns:
        The path of `data_card.json`.
    """
    out_dir = Path(out_dir)
    suffix = ".jsonl.gz" if compress else ".jsonl"
    card = dict(card, files={name: name + suffix for name in SPLITS})
    for name in SPLITS:
        write_jsonl_atomic(out_dir / (name + suffix), splits[name])
    write_text_atomic(out_dir / "DATA_CARD.md", render_data_card(card))
    return write_json_atomic(out_dir / "data_card.json", card)
