"""Preference pairs in TRL's forms (prompt / chosen / rejected) read as two-candidate records."""

from __future__ import annotations

import json

import datasets
import pytest

from blender.records import RecordError
from blender.records.preference import (
    PREFERENCE_SIGNAL,
    is_preference_record,
    load_preference_split,
    parse_preference,
    preference_records,
    read_preference_jsonl,
    split_prompt,
)
from tests.conftest import REPO, write_jsonl

FIXTURE = REPO / "tests" / "fixtures" / "preference"


def test_the_standard_form():
    record = parse_preference(
        {"prompt": "Name a prime.", "chosen": "7", "rejected": "4", "score_chosen": 9.0}, "f:1", "f/1"
    )
    assert record.id == "f/1" and record.source == "Name a prime." and is_preference_record(record)
    assert [(c.model, c.text, c.scores) for c in record.candidates] == [
        ("chosen", "7", {PREFERENCE_SIGNAL: 1.0}),
        ("rejected", "4", {PREFERENCE_SIGNAL: 0.0}),
    ]
    assert record.extra == {"score_chosen": 9.0}


def test_the_conversational_forms():
    prompt = [{"role": "user", "content": "Name a prime."}]
    record = parse_preference(
        {
            "id": 3,
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": "7"}],
            "rejected": [{"role": "assistant", "content": "4"}],
        },
        "f:1",
        "x",
    )
    assert record.id == "3" and record.source == "Name a prime." and record.candidates[0].text == "7"
    # Implicit prompt: the shared leading messages are the prompt (TRL's extract_prompt).
    turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Name a prime."},
    ]
    record = parse_preference(
        {
            "chosen": [*turns, {"role": "assistant", "content": "7"}],
            "rejected": [*turns, {"role": "assistant", "content": "4"}],
        },
        "f:2",
        "y",
    )
    assert record.source == "USER: Hi\nASSISTANT: Hello\nUSER: Name a prime."
    assert [c.text for c in record.candidates] == ["7", "4"]


def test_an_implicit_text_prompt_is_the_common_beginning():
    assert split_prompt("Q: name a prime. A: seven", "Q: name a prime. A: four") == (
        "Q: name a prime. A:",
        " seven",
        " four",
    )
    record = parse_preference({"chosen": "Q: x? A: yes", "rejected": "Q: x? A: no"}, "f:1", "z")
    assert record.source == "Q: x? A:" and [c.text for c in record.candidates] == [" yes", " no"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"prompt": "p", "chosen": "a"}, r"f:7: no 'rejected'"),
        (
            {"prompt": "p", "chosen": "a", "rejected": 3},
            r"f:7: 'rejected' must be a string or a list of messages",
        ),
        (
            {"prompt": "p", "chosen": "a", "rejected": [{"role": "assistant", "content": "b"}]},
            "must both be strings",
        ),
        ({"chosen": "yes", "rejected": "no"}, "share no beginning"),
        ({"prompt": "p", "chosen": " ", "rejected": "b"}, "empty chosen or rejected"),
        (
            {
                "prompt": [{"role": "user"}],
                "chosen": [{"role": "assistant", "content": "a"}],
                "rejected": [{"role": "assistant", "content": "b"}],
            },
            r"'prompt'\[0\]: a message is",
        ),
    ],
)
def test_a_bad_pair_names_where_and_what(raw, message):
    with pytest.raises(RecordError, match=message):
        parse_preference(raw, "f:7", "x")


def test_jsonl_files_and_datasets(tmp_path):
    rows = [{"prompt": f"p{k}", "chosen": "good", "rejected": "bad"} for k in range(3)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    from_file = load_preference_split(tmp_path, "train")
    assert [r.id for r in from_file] == ["train/1", "train/2", "train/3"]
    # A `datasets` dataset in TRL's format, in memory and through load_dataset (the hub path, offline here).
    in_memory = preference_records(datasets.Dataset.from_list(rows), "ds")
    assert [r.source for r in in_memory] == ["p0", "p1", "p2"] and [r.id for r in in_memory] == [
        "ds/0",
        "ds/1",
        "ds/2",
    ]
    loaded = datasets.load_dataset("json", data_files=str(tmp_path / "train.jsonl"), split="train")
    assert [r.candidates[0].text for r in preference_records(loaded, "json", limit=2)] == ["good", "good"]
    (tmp_path / "bad.jsonl").write_text(json.dumps(rows[0]) + "\n" + '{"prompt": "p", "chosen": "a"}\n')
    with pytest.raises(RecordError, match=r"bad.jsonl:2: no 'rejected'"):
        read_preference_jsonl(tmp_path / "bad.jsonl")
    write_jsonl(tmp_path / "twice.jsonl", [{"id": "a", **rows[0]}, {"id": "a", **rows[1]}])
    with pytest.raises(RecordError, match="id 'a' repeats"):
        read_preference_jsonl(tmp_path / "twice.jsonl")


def test_the_alpaca_blend_pairs():
    # Real pairs: chosen and rejected are the answers GPT-4-turbo preferred most and least (gpt4_pref).
    train, val = load_preference_split(FIXTURE, "train"), load_preference_split(FIXTURE, "val")
    assert (len(train), len(val)) == (32, 16)
    assert not {r.id for r in train} & {r.id for r in val}
    for record in train + val:
        assert record.extra["chosen_gpt4_pref"] > record.extra["rejected_gpt4_pref"]
