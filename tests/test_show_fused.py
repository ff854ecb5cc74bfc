"""scripts/show_fused.py: answers beside the candidates they were written from, and clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import write_jsonl

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "show_fused.py"


def show(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def fused_file(path: Path, ids: list[str], text: str) -> Path:
    rows = [{"id": i, "topk_models": ["m3", "m1"], "fused": text, "decoding": "x"} for i in ids]
    return write_jsonl(path, rows)


def test_shows_each_drawn_answer_beside_its_top_k(small_dataset, tmp_path):
    ids = [f"test/{100 + i}" for i in range(6)]
    looping = " ".join(["one two three four five six seven eight nine ten"] * 3)
    main = fused_file(tmp_path / "fused.jsonl", ids, looping)
    other = fused_file(tmp_path / "other.jsonl", ids, "the good answer")
    out = tmp_path / "shown.md"
    result = show(main, "--compare", other, "--data", small_dataset, "--count", 2, "--seed", 1, "--out", out)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.count("#### ") == 2  # two answers drawn of six
    assert "1. *m3* (5 words)" in text and "2. *m1* (3 words)" in text  # rank order of the saved top-K
    assert "**Fused** (30 words, 10.00× the reference; loops)" in text
    assert "**Compared** (3 words, 1.00× the reference; no loop)" in text
    again = show(main, "--data", small_dataset, "--count", 2, "--seed", 1)
    assert [line for line in again.stdout.splitlines() if line.startswith("####")] == [
        line for line in text.splitlines() if line.startswith("####")
    ]  # the seed fixes the draw


def test_an_id_outside_the_split_is_named(small_dataset, tmp_path):
    main = fused_file(tmp_path / "fused.jsonl", ["test/100", "elsewhere/7"], "x")
    result = show(main, "--data", small_dataset)
    assert result.returncode == 1
    assert "id 'elsewhere/7' is not in the split" in result.stderr and str(main) in result.stderr
