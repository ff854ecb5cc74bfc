"""`blender-rank`: a JSONL of instructions with candidates in, ranks and scores out; streaming, resumable after
a SIGKILL (no record lost or written twice), one clear error for a bad line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blender.api import Blender
from blender.cli import rank as rank_cli
from blender.rank_file import RankFileError, completed_ids, rank_file
from blender.rankers.predict import InferenceSettings
from tests.conftest import REPO, SHARED, compose_config, write_jsonl

QUIET = InferenceSettings(show_progress=False, precision="fp32")


def alpaca_items(n: int, n_candidates: int = 4) -> list[dict]:
    """Real alpaca_blend instructions and answers (val, then train), with a few candidates each."""
    rows = []
    for split in ("val", "train"):
        for line in (SHARED / "data" / "alpaca_blend" / f"{split}.jsonl").read_text().splitlines():
            record = json.loads(line)
            rows.append(
                {
                    "id": record["id"],
                    "instruction": record["instruction"],
                    "input": record["input"],
                    "candidates": [c["text"] for c in record["candidates"][:n_candidates]],
                }
            )
            if len(rows) == n:
                return rows
    return rows


@pytest.fixture
def checkpoint(tiny_ranker, tmp_path) -> Path:
    tiny_ranker.save_pretrained(tmp_path / "ranker")
    return tmp_path / "ranker"


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ranks_a_file_as_blender_rank_does(checkpoint, tmp_path):
    items = alpaca_items(6)
    items[2]["candidates"][1] = {"text": items[2]["candidates"][1], "model": "named"}
    del items[3]["id"]  # the line number stands in
    write_jsonl(tmp_path / "in.jsonl", items)
    blender = Blender.from_pretrained(checkpoint, device="cpu", inference=QUIET)
    summary = rank_file(
        blender, tmp_path / "in.jsonl", tmp_path / "out.jsonl", chunk_size=4, show_progress=False
    )
    assert summary == {"records": 6, "resumed": 0, "ranked": 6}
    lines = read_lines(tmp_path / "out.jsonl")
    assert [line["id"] for line in lines] == [
        items[0]["id"],
        items[1]["id"],
        items[2]["id"],
        "4",
        items[4]["id"],
        items[5]["id"],
    ]
    texts = [[c["text"] if isinstance(c, dict) else c for c in item["candidates"]] for item in items]
    scores = blender.rank(
        [i["instruction"] for i in items], texts, [i["input"] for i in items], return_scores=True
    )
    ranks = blender.rank([i["instruction"] for i in items], texts, [i["input"] for i in items])
    for line, s, r in zip(lines, scores, ranks, strict=True):
        assert (
            line["ranks"] == r and line["scores"] == pytest.approx(s, abs=1e-6) and line["best"] == r.index(1)
        )
    # Run again: everything is there, nothing is added.
    assert (
        rank_file(blender, tmp_path / "in.jsonl", tmp_path / "out.jsonl", show_progress=False)["ranked"] == 0
    )
    assert len(read_lines(tmp_path / "out.jsonl")) == 6


def test_a_bad_line_stops_the_run_before_anything_is_written(checkpoint, tmp_path):
    items = alpaca_items(4)
    items[2]["candidates"] = ["only one"]
    write_jsonl(tmp_path / "in.jsonl", items)
    blender = Blender.from_pretrained(checkpoint, device="cpu", inference=QUIET)
    with pytest.raises(
        RankFileError, match=r"in.jsonl:3: 'candidates' must be a list of at least two answers"
    ):
        rank_file(blender, tmp_path / "in.jsonl", tmp_path / "out.jsonl", show_progress=False)
    assert not (tmp_path / "out.jsonl").exists()
    (tmp_path / "in.jsonl").write_text('{"instruction": "x", "candidates": ["a", "b"]}\n{"instruction": \n')
    with pytest.raises(RankFileError, match=r"in.jsonl:2: not valid JSON"):
        rank_file(blender, tmp_path / "in.jsonl", tmp_path / "out.jsonl", show_progress=False)


def test_an_output_of_another_input_is_refused(checkpoint, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", alpaca_items(3))
    write_jsonl(
        tmp_path / "out.jsonl", [{"id": "someone else", "ranks": [1, 2], "scores": [1, 0], "best": 0}]
    )
    blender = Blender.from_pretrained(checkpoint, device="cpu", inference=QUIET)
    with pytest.raises(RankFileError, match="out.jsonl:1: holds id 'someone else'.*another input"):
        rank_file(blender, tmp_path / "in.jsonl", tmp_path / "out.jsonl", show_progress=False)


def test_a_line_cut_by_a_kill_is_ranked_again(checkpoint, tmp_path):
    items = alpaca_items(5)
    write_jsonl(tmp_path / "in.jsonl", items)
    blender = Blender.from_pretrained(checkpoint, device="cpu", inference=QUIET)
    rank_file(blender, tmp_path / "in.jsonl", tmp_path / "whole.jsonl", chunk_size=1, show_progress=False)
    whole = (tmp_path / "whole.jsonl").read_text().splitlines(keepends=True)
    # Two complete lines and half of the third, as a kill in the middle of a write leaves them.
    (tmp_path / "out.jsonl").write_text("".join(whole[:2]) + whole[2][: len(whole[2]) // 2])
    assert completed_ids(tmp_path / "out.jsonl") == [items[0]["id"], items[1]["id"]]
    summary = rank_file(
        blender, tmp_path / "in.jsonl", tmp_path / "out.jsonl", chunk_size=1, show_progress=False
    )
    assert summary == {"records": 5, "resumed": 2, "ranked": 3}
    assert (tmp_path / "out.jsonl").read_text() == "".join(whole)


def test_the_command_survives_sigkill_and_resumes(checkpoint, tmp_path):
    items = alpaca_items(120)
    write_jsonl(tmp_path / "in.jsonl", items)
    out = tmp_path / "out.jsonl"
    command = [
        sys.executable,
        "-m",
        "blender.cli.rank",
        f"checkpoint={checkpoint}",
        f"input={tmp_path / 'in.jsonl'}",
        f"output={out}",
        "chunk_size=1",
        "device=cpu",
        "show_progress=false",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 10:
            break
        time.sleep(0.02)
    assert process.poll() is None, f"finished before it could be killed:\n{process.stdout.read().decode()}"
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    written = out.read_bytes().count(b"\n")
    assert 10 <= written < len(items)
    # The same command again finishes the file: every record once, in input order.
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    lines = read_lines(out)
    assert [line["id"] for line in lines] == [item["id"] for item in items]
    # And the lines equal those of a run that was never killed.
    blender = Blender.from_pretrained(checkpoint, device="cpu", inference=QUIET)
    rank_file(blender, tmp_path / "in.jsonl", tmp_path / "clean.jsonl", chunk_size=1, show_progress=False)
    for got, clean in zip(lines, read_lines(tmp_path / "clean.jsonl"), strict=True):
        assert got["ranks"] == clean["ranks"] and got["scores"] == pytest.approx(clean["scores"], abs=1e-6)


def test_the_console_script_reports_a_bad_line_in_one_line(checkpoint, tmp_path):
    script = Path(sys.executable).parent / "blender-rank"
    if not script.exists():
        pytest.skip("blender-rank is not installed in this environment (pip install -e .)")
    (tmp_path / "in.jsonl").write_text(
        '{"instruction": "x", "candidates": ["a", "b"]}\n{"candidates": ["a", "b"]}\n'
    )
    result = subprocess.run(
        [
            str(script),
            f"checkpoint={checkpoint}",
            f"input={tmp_path / 'in.jsonl'}",
            f"output={tmp_path / 'out.jsonl'}",
            "device=cpu",
        ],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "in.jsonl:2: no 'instruction'" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "ranker"]  # no log file, no run folder


def test_the_entry_point_runs_from_its_config(checkpoint, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", alpaca_items(3))
    cfg = compose_config(
        "rank",
        [
            f"checkpoint={checkpoint}",
            f"input={tmp_path / 'in.jsonl'}",
            f"output={tmp_path / 'out.jsonl'}",
            "device=cpu",
            "show_progress=false",
        ],
    )
    assert cfg.chunk_size >= 1 and cfg.aggregation == "max_logits"
    assert rank_cli.run(cfg) == {"records": 3, "resumed": 0, "ranked": 3}
