"""The mix on fixtures with known duplicates, lengths and banned phrases."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from blender.files import read_jsonl_rows
from blender.mixinstruct.mix import (
    ORIGINAL_BAN_PHRASES,
    MixSettings,
    build_mix,
    has_banned_phrase,
    make_token_counter,
    write_mix,
)
from blender.mixinstruct.sources import SourceSpec, load_source

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
count_words = make_token_counter("whitespace")


def _rec(id_: str, source: str, n_out: int = 12, n_src: int = 6, output: str | None = None) -> dict[str, str]:
    """A record whose output has n_out words and whose instruction+input has n_src words."""
    return {
        "id": id_,
        "instruction": " ".join(["do"] * n_src),
        "input": "",
        "output": output if output is not None else " ".join(["w"] * n_out),
        "source": source,
    }


def _settings(**overrides: object) -> MixSettings:
    base = dict(
        caps={"a": 100, "b": 100},
        tokenizer="whitespace",
        ban_phrases=["as an ai"],
        ban_sources=None,
        ban_match="word",
        n_val=1,
        n_test=1,
        n_train=100,
        min_output_tokens=3,
        max_output_tokens=20,
        min_source_tokens=2,
        max_source_tokens=10,
    )
    base.update(overrides)
    return MixSettings(**base)  # type: ignore[arg-type]


def test_each_filter_removes_exactly_its_records() -> None:
    sources = {
        "a": [
            _rec("a/0", "a"),
            _rec("a/1", "a", n_out=2),  # output too short
            _rec("a/2", "a", n_out=21),  # output too long
            _rec("a/3", "a", n_src=1),  # source too short
            _rec("a/4", "a", n_src=11),  # source too long
            _rec("a/5", "a", output="well as an ai I think this is fine"),  # banned
        ],
        "b": [
            _rec("b/0", "b", n_out=3, n_src=2),
            _rec("b/1", "b", n_out=20, n_src=10),
        ],  # the bounds are kept
    }
    splits, card = build_mix(sources, _settings(), count_words)
    kept = sorted(r["id"] for split in splits.values() for r in split)
    assert kept == ["a/0", "b/0", "b/1"]
    steps = {s["step"]: s for s in card["steps"]}
    assert card["sources"]["a"] == {"loaded": 6, "banned": 1, "kept": 5}
    assert steps["mixed"]["count"] == 7
    assert steps["output length filter"]["removed"] == 2
    assert steps["source length filter"]["removed"] == 2
    assert steps["source length filter"]["by_source"] == {"a": 1, "b": 2}
    assert [card["splits"][s]["count"] for s in ("val", "test", "train")] == [1, 1, 1]
    assert set(splits["train"][0]) == {"id", "instruction", "input", "output"}


def test_dedup_on_content_keeps_the_first_and_on_whole_record_keeps_both() -> None:
    twin = {"instruction": "same question here", "input": "", "output": "one two three four", "source": "a"}
    sources = {"a": [dict(twin, id="a/0"), dict(twin, id="a/1")], "b": [dict(twin, id="b/0", source="b")]}
    by_content = _settings(dedup_fields=["instruction", "input", "output"], caps={"a": 10, "b": 10})
    _, card = build_mix(sources, by_content, count_words)
    assert [s["count"] for s in card["steps"][:2]] == [3, 1]
    # The original keys on the whole record, id included: records with distinct ids all survive.
    _, card = build_mix(sources, _settings(caps={"a": 10, "b": 10}), count_words)
    assert [s["count"] for s in card["steps"][:2]] == [3, 3]
    # A repeated id with the same content is an exact duplicate either way.
    sources["a"].append(dict(twin, id="a/0"))
    _, card = build_mix(sources, _settings(caps={"a": 10, "b": 10}), count_words)
    assert card["steps"][1]["removed"] == 1


def test_caps_follow_a_seeded_shuffle_as_the_original() -> None:
    records = [_rec(f"a/{i}", "a") for i in range(20)]
    splits, card = build_mix(
        {"a": records, "b": []}, _settings(caps={"a": 5, "b": 0}, n_train=10), count_words
    )
    # The original: random.seed(42); random.shuffle(data); data[:cap], then the same for the final split.
    expected = list(records)
    random.seed(42)
    random.shuffle(expected)
    expected = expected[:5]
    random.seed(42)
    random.shuffle(expected)
    assert [r["id"] for r in splits["val"] + splits["test"] + splits["train"]] == [r["id"] for r in expected]
    assert card["sources"]["a"]["kept"] == 5
    assert card["splits"]["train"]["count"] == 3 and card["splits"]["train"]["requested"] == 10


def test_ban_applies_only_to_named_sources_before_the_cap() -> None:
    banned = _rec("a/0", "a", output="sure here is the answer you asked for")
    sources = {"a": [banned, _rec("a/1", "a")], "b": [dict(banned, id="b/0", source="b")]}
    _, card = build_mix(
        sources, _settings(ban_phrases=["sure"], ban_sources=["a"], caps={"a": 1, "b": 5}), count_words
    )
    assert card["sources"]["a"] == {"loaded": 2, "banned": 1, "kept": 1}
    assert "banned" not in card["sources"]["b"] and card["sources"]["b"]["kept"] == 1


def test_substring_ban_is_the_originals_and_word_ban_is_narrower() -> None:
    text = "I know the answer."
    assert has_banned_phrase(text, ORIGINAL_BAN_PHRASES, "substring")  # "no" inside "know"
    assert not has_banned_phrase(text, ORIGINAL_BAN_PHRASES, "word")
    assert has_banned_phrase("Of course! Here it is.", ORIGINAL_BAN_PHRASES, "word")
    assert has_banned_phrase("I'M SORRY, I cannot.", ["i'm sorry"], "word")


def test_caps_naming_an_unloaded_source_fail() -> None:
    with pytest.raises(ValueError, match=r"caps name sources \['b'\]"):
        build_mix({"a": []}, _settings(), count_words)


def test_settings_reject_unknown_choices() -> None:
    with pytest.raises(ValueError, match="ban_match"):
        MixSettings(ban_match="regex")
    with pytest.raises(ValueError, match="dedup_fields"):
        MixSettings(dedup_fields=["text"])


def test_mix_of_the_fixture_files_writes_splits_and_card(tmp_path: Path) -> None:
    specs = {
        "gpt4all": "gpt4all_prompt_generations.jsonl",
        "dolly": "databricks-dolly-15k.jsonl",
        "alpaca_gpt4": "alpaca_gpt4_data.json",
        "sharegpt": "sharegpt.json",
    }
    sources = {name: load_source(SourceSpec(name, path=str(FIXTURES / f))) for name, f in specs.items()}
    settings = MixSettings(
        caps={"gpt4all": 100, "dolly": 100, "alpaca_gpt4": 100, "sharegpt": 100},
        dedup_fields=["instruction", "input", "output"],
        tokenizer="whitespace",
        ban_phrases=["i'm sorry", "sure", "okay", "of course", "as an ai language model"],
        ban_sources=None,
        ban_match="word",
        min_output_tokens=10,
        max_output_tokens=30,
        min_source_tokens=2,
        max_source_tokens=30,
        n_val=3,
        n_test=3,
        n_train=100,
    )
    splits, card = build_mix(sources, settings, count_words)
    steps = {s["step"]: s for s in card["steps"]}
    # Known in the fixtures: the alpaca file repeats row 0 as row 6; dolly row 4 ("Sure, ...") and
    # sharegpt's Japan trip ("Of course! ...") are banned; "Seven." and "Oslo." are too short; gpt4all's
    # guitar answer is too long; its "Hi" prompt is too short.
    assert card["sources"]["dolly"]["banned"] == 1 and card["sources"]["sharegpt"]["banned"] == 1
    assert steps["deduplicated"]["removed"] == 1
    assert steps["output length filter"]["removed"] == 3
    assert steps["source length filter"]["removed"] == 1
    all_ids = [r["id"] for split in splits.values() for r in split]
    assert len(all_ids) == len(set(all_ids)) == steps["source length filter"]["count"] == 16
    # Deduplication runs after the per-source shuffle, so whichever twin the shuffle put first survives.
    assert ("itwgpt4/0" in all_ids) != ("itwgpt4/6" in all_ids)

    card_path = write_mix(tmp_path / "mix", splits, card)
    for name in ("train", "val", "test"):
        assert read_jsonl_rows(tmp_path / "mix" / f"{name}.jsonl") == splits[name]
    saved = json.loads(card_path.read_text())
    assert saved["splits"]["train"]["count"] == 10 and saved["files"]["train"] == "train.jsonl"
    md = (tmp_path / "mix" / "DATA_CARD.md").read_text()
    assert "| deduplicated | 20 | 1 |" in md
    assert not list((tmp_path / "mix").glob("*.tmp-*"))


def test_write_mix_can_gzip(tmp_path: Path) -> None:
    splits = {"train": [{"id": "x/0", "instruction": "", "input": "i", "output": "o"}], "val": [], "test": []}
    card = {"settings": MixSettings().__dict__, "sources": {}, "steps": [], "splits": {}, "token_lengths": {}}
    card["token_lengths"] = {
        "output": {"mean": 0, "min": 0, "max": 0},
        "source": {"mean": 0, "min": 0, "max": 0},
    }
    write_mix(tmp_path, splits, card, compress=True)
    assert read_jsonl_rows(tmp_path / "train.jsonl.gz") == splits["train"]
