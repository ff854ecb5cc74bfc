"""Files that are broken or hostile end in one RecordError naming file and line, never in another exception, and a
seeded fuzz of a few thousand mutated files shows it."""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

import pytest

from blender.records import RecordError, read_jsonl
from tests.conftest import make_raw_record

WHERE = re.compile(r"^(?P<path>.+?):(?P<line>\d+)\b")


def lines_of(n: int = 3) -> list[str]:
    return [json.dumps(make_raw_record(i)) for i in range(n)]


def refused(path: Path, line: int) -> str:
    """Read `path`, expect a RecordError that names it and `line`; return the message."""
    with pytest.raises(RecordError) as caught:
        read_jsonl(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}"), message
    return message


def test_bytes_that_are_not_utf8_name_file_and_line(tmp_path):
    path = tmp_path / "a.jsonl"
    good = lines_of(2)
    path.write_bytes(
        (good[0] + "\n").encode() + good[1].encode()[:30] + b"\xff\xfe" + good[1].encode()[30:] + b"\n"
    )
    assert "not UTF-8" in refused(path, 2)


def test_a_truncated_gzip_names_file_and_line(tmp_path):
    whole = gzip.compress(("\n".join(lines_of(40)) + "\n").encode())
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(RecordError, match=r"a\.jsonl\.gz:\d+: the gzip stream ends early or is corrupt"):
        read_jsonl(path)


def test_a_file_that_is_not_gzip_at_all(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    path.write_text("\n".join(lines_of(1)) + "\n")
    assert "gzip" in refused(path, 1)


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('"gpt4_pref": ' + "9" * 400, "must be a finite number"),  # an int too large for a float
        ('"gpt4_pref": ' + "9" * 5000, "not valid JSON"),  # past Python's 4,300-digit limit
        ('"gpt4_pref": 1e308', "beyond ±1e+06"),  # finite, but no metric here is that large
    ],
    ids=["overflow", "digits", "huge"],
)
def test_numbers_json_or_floats_cannot_hold(tmp_path, text, what):
    raw = json.dumps(make_raw_record(0)).replace('"gpt4_pref": 0.2', text, 1)
    path = tmp_path / "a.jsonl"
    path.write_text(lines_of(1)[0] + "\n" + raw + "\n")
    assert what in refused(path, 2)


def test_deeply_nested_json(tmp_path):
    path = tmp_path / "a.jsonl"
    raw = make_raw_record(0)
    path.write_text(json.dumps(raw)[:-1] + ', "extra": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    assert "nested too deeply" in refused(path, 1)


@pytest.mark.parametrize("field", ["instruction", "text", "model"])
def test_lone_surrogates_in_a_text_are_refused(tmp_path, field):
    raw = json.dumps(make_raw_record(0))
    target = {"instruction": '"the answer is"', "text": '"text": "bad', "model": '"model": "m1"'}[field]
    broken = {
        "instruction": '"the \\ud800answer is"',
        "text": '"text": "\\udfffbad',
        "model": '"model": "m\\ud8001"',
    }
    path = tmp_path / "a.jsonl"
    path.write_text(raw.replace(target, broken[field], 1) + "\n")
    assert "lone surrogate" in refused(path, 1)


def mutate(line: str, rng: random.Random) -> bytes:
    """One random corruption of a JSON line: bytes flipped, cut, inserted or repeated, a value replaced, nesting."""
    data = bytearray(line.encode())
    kind = rng.randrange(9)
    if kind == 0:  # flip bytes
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:  # cut
        data = data[: rng.randrange(len(data))]
    elif kind == 2:  # insert random bytes
        at = rng.randrange(len(data))
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
    elif kind == 3:  # a number replaced by something hostile
        numbers = [m.span() for m in re.finditer(rb"-?\d+\.\d+", bytes(data))]
        a, b = rng.choice(numbers)
        data[a:b] = rng.choice(
            [
                b"1e400",
                b"-1e999",
                b"9" * rng.choice([30, 400, 4400]),
                b"NaN",
                b"Infinity",
                b"1e308",
                b'"7"',
                b"null",
                b"true",
                b"[]",
            ]
        )
    elif kind == 4:  # a string's content replaced by escapes, lone surrogates among them
        strings = [m.span() for m in re.finditer(rb'"[^"\\]{2,}"', bytes(data))]
        a, b = rng.choice(strings)
        data[a + 1 : b - 1] = rng.choice(
            [b"\\ud800", b"\\udfff x", b"\\u0000", b"\\n\\t", "é".encode(), b"\\\\"]
        )
    elif kind == 5:  # deep nesting
        depth = rng.choice([50, 5000, 50_000])
        data = data[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
    elif kind == 6:  # a structural character removed
        spots = [i for i, c in enumerate(data) if c in b'{}[]:,"']
        del data[rng.choice(spots)]
    elif kind == 7:  # the whole line replaced by another JSON value
        data = bytearray(rng.choice([b"[]", b"3", b'"x"', b"null", b"{}", b'{"id": 1}']))
    else:  # a key renamed
        keys = [
            m.span()
            for m in re.finditer(
                rb'"(id|instruction|input|output|candidates|model|text|scores)"', bytes(data)
            )
        ]
        a, b = rng.choice(keys)
        data[a:b] = b'"' + bytes(rng.choice(b"abcxyz") for _ in range(3)) + b'"'
    return bytes(data)


def test_fuzz_every_file_loads_or_is_refused_naming_file_and_line(tmp_path):
    rng = random.Random(0)
    good = lines_of(3)
    outcomes = {"loaded": 0, "refused": 0}
    for k in range(3000):
        lines = [line.encode() for line in good]
        lines[rng.randrange(3)] = mutate(rng.choice(good), rng)
        payload = b"\n".join(lines) + b"\n"
        gz = k % 5 == 0
        path = tmp_path / f"f{k}.jsonl{'.gz' if gz else ''}"
        if gz:
            payload = gzip.compress(payload)
            if rng.random() < 0.3:
                payload = payload[: rng.randrange(len(payload))]
        path.write_bytes(payload)
        try:
            records = read_jsonl(path)
        except RecordError as error:
            match = WHERE.match(str(error))
            assert match and match["path"] == str(path) and int(match["line"]) >= 1, str(error)
            outcomes["refused"] += 1
        else:
            assert 1 <= len(records) <= 3
            for record in records:  # what loads is fit to write back and to tokenize
                json.dumps(record.to_dict(), ensure_ascii=False).encode("utf-8")
            outcomes["loaded"] += 1
        path.unlink()
    # Seeded, so the split is exact: a loader that starts accepting (or refusing) other files changes it, and
    # both outcomes occur (a fuzz that only breaks, or only passes, would test little).
    assert outcomes == {"loaded": 81, "refused": 2919}
