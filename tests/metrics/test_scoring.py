"""The scoring job: every candidate scored once, resumable after SIGKILL, clear failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sacrebleu

from blender.cli import score
from blender.metrics import BLEU, ROUGE, MetricLoadError
from blender.metrics.scoring import ScoringError, check_scored, journal_path, read_scored, score_split
from blender.records import parse_record, read_jsonl
from tests.conftest import REPO, compose_config, make_raw_record, write_jsonl
from tests.metrics.slow_metric import WordCount

N_CANDIDATES = 4


@pytest.fixture(autouse=True)
def fresh_counter():
    WordCount.texts_scored = []


def make_records(n: int) -> list:
    rows = [make_raw_record(i, N_CANDIDATES) for i in range(n)]
    rows[0]["candidates"][1]["text"] = rows[0]["output"]  # a perfect answer: BLEU 100, ROUGE-L 1
    return [parse_record(r, f"row {i}") for i, r in enumerate(rows)]


def lexical() -> dict:
    return {
        "bleu": BLEU(show_progress=False),
        "rougeL": ROUGE("rougeL", show_progress=False),
        "words": WordCount(),
    }


def test_scores_every_candidate_in_one_call_per_metric_per_chunk(tmp_path):
    records = make_records(5)
    out = tmp_path / "val.jsonl"
    scored = score_split(records, lexical(), out, batch_records=2, show_progress=False)
    assert [r.id for r in scored] == [r.id for r in records]
    first = scored[0].candidates[1]
    assert first.scores["bleu"] == pytest.approx(100.0) and first.scores["rougeL"] == pytest.approx(1.0)
    other = scored[2].candidates[3]
    expected = sacrebleu.sentence_bleu(other.text, [records[2].output]).score
    assert other.scores["bleu"] == pytest.approx(expected)
    assert other.scores["words"] == len(other.text.split())
    assert other.scores["gpt4_pref"] == records[2].candidates[3].scores["gpt4_pref"]  # kept
    assert len(WordCount.texts_scored) == 5 * N_CANDIDATES
    # The output is a data file (same records, with the scores) and the journal is gone.
    assert [r.to_dict() for r in read_jsonl(out)] == [r.to_dict() for r in scored]
    assert not journal_path(out).exists()


def test_a_finished_output_is_not_scored_again(tmp_path):
    records = make_records(3)
    score_split(records, lexical(), tmp_path / "val.jsonl", show_progress=False)
    WordCount.texts_scored = []
    again = score_split(records, lexical(), tmp_path / "val.jsonl", show_progress=False)
    assert WordCount.texts_scored == [] and len(again) == 3


def test_read_scored_takes_the_first_finished_output_of_the_same_records(tmp_path):
    records = make_records(3)
    done = tmp_path / "done" / "val.jsonl"
    score_split(records, lexical(), done, show_progress=False)
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"id": "not json')
    other = tmp_path / "other" / "val.jsonl"
    score_split(make_records(2), lexical(), other, show_progress=False)
    candidates = [tmp_path / "missing.jsonl", torn, other, done]
    assert [r.to_dict() for r in read_scored(candidates, records, ["bleu"])] == [
        r.to_dict() for r in read_jsonl(done)
    ]
    assert read_scored(candidates, records, ["bleu", "bertscore"]) is None  # a metric nobody scored
    assert read_scored(candidates[:3], records, ["bleu"]) is None


def test_extra_outputs_are_scored_too(tmp_path):
    records = make_records(2)
    for record in records:
        record.extra["fused"] = record.output
    scored = score_split(
        records, lexical(), tmp_path / "val.jsonl", extra_outputs=["fused"], show_progress=False
    )
    assert scored[1].extra["fused_scores"] == {
        "bleu": pytest.approx(100.0),
        "rougeL": pytest.approx(1.0),
        "words": 3.0,
    }
    assert read_jsonl(tmp_path / "val.jsonl")[1].extra["fused_scores"]["words"] == 3.0


class FailsAfter(WordCount):
    """Dies on its `calls`-th call, as a run killed between chunks."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.left = calls

    def score(self, candidates, references):
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt
        return super().score(candidates, references)


def test_resume_skips_what_the_journal_holds_and_rescores_a_torn_line(tmp_path):
    records = make_records(7)
    out = tmp_path / "val.jsonl"
    with pytest.raises(KeyboardInterrupt):
        score_split(records, {"words": FailsAfter(calls=3)}, out, batch_records=2, show_progress=False)
    journal = journal_path(out)
    assert len(journal.read_text().splitlines()) == 4 and not out.exists()
    # A kill in the middle of the next append leaves half a line.
    line = json.dumps(records[4].to_dict())
    with open(journal, "a") as handle:
        handle.write(line[: len(line) // 2])
    WordCount.texts_scored = []
    scored = score_split(records, {"words": WordCount()}, out, batch_records=2, show_progress=False)
    assert (
        len(WordCount.texts_scored) == 3 * N_CANDIDATES
    )  # records 4, 5, 6 only; 4 again since its line was torn
    ids = [r.id for r in read_jsonl(out)]
    assert ids == [r.id for r in records] and len(set(ids)) == len(ids)
    assert all("words" in c.scores for r in scored for c in r.candidates)
    assert not journal.exists()


def test_a_journal_of_other_input_fails_clearly(tmp_path):
    out = tmp_path / "val.jsonl"
    with pytest.raises(KeyboardInterrupt):
        score_split(
            make_records(4), {"words": FailsAfter(calls=2)}, out, batch_records=2, show_progress=False
        )
    other = [parse_record(make_raw_record(50 + i), "x") for i in range(4)]
    with pytest.raises(
        ScoringError, match=r"record 0 is 'test/0' but the input's record 0 is 'test/50'.*delete"
    ):
        score_split(other, {"words": WordCount()}, out, batch_records=2, show_progress=False)
    # resume=False starts over.
    assert len(score_split(other, {"words": WordCount()}, out, resume=False, show_progress=False)) == 4


def test_a_journal_from_other_metrics_fails_clearly(tmp_path):
    out = tmp_path / "val.jsonl"
    records = make_records(4)
    with pytest.raises(KeyboardInterrupt):
        score_split(records, {"words": FailsAfter(calls=2)}, out, batch_records=2, show_progress=False)
    with pytest.raises(ScoringError, match="written with other metrics"):
        score_split(
            records, {"words": WordCount(), "bleu": BLEU(show_progress=False)}, out, show_progress=False
        )


def test_check_scored_names_lost_and_repeated_records():
    records = make_records(3)
    with pytest.raises(ScoringError, match=r"repeated \['test/0'\], missing \['test/2'\]"):
        check_scored([records[0], records[0], records[1]], records, [])
    with pytest.raises(ScoringError, match=r"record 'test/0': no score for \['m0:bleu'"):
        check_scored(records, records, ["bleu"])


def scoring_command(data_dir: Path, out_dir: Path, delay: float) -> list[str]:
    return [
        f"data.path={data_dir}",
        f"output_dir={out_dir}",
        "metrics=offline",
        "~metrics.bertscore",
        "+metrics.words._target_=tests.metrics.slow_metric.WordCount",
        f"+metrics.words.delay={delay}",
        "batch_records=2",
        "report=false",
        "show_progress=false",
    ]


@pytest.mark.slow
def test_scoring_killed_with_sigkill_and_restarted_scores_every_record_once(tmp_path):
    data_dir, out_dir = tmp_path / "data", tmp_path / "scores"
    write_jsonl(data_dir / "val.jsonl", [make_raw_record(i, N_CANDIDATES) for i in range(12)])
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "blender.cli.score", *scoring_command(data_dir, out_dir, delay=0.4)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal = journal_path(out_dir / "val.jsonl")
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if journal.exists() and len(journal.read_text().splitlines()) >= 4:
                break
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    done = len(journal.read_text().splitlines())
    assert process.returncode == -signal.SIGKILL and 4 <= done < 12, "the run should be killed halfway"
    assert not (out_dir / "val.jsonl").exists()

    summary = score.run(compose_config("score", scoring_command(data_dir, out_dir, delay=0.0)))
    assert len(WordCount.texts_scored) == (12 - done) * N_CANDIDATES  # nothing scored twice
    records = read_jsonl(out_dir / "val.jsonl")
    assert [r.id for r in records] == [f"test/{i}" for i in range(12)] and summary["n_records"] == 12
    for record in records:
        for candidate in record.candidates:
            assert {"bleu", "rouge1", "rouge2", "rougeL", "words", "gpt4_pref"} <= set(candidate.scores)
    assert not journal.exists()


def test_paper_metrics_fail_naming_every_checkpoint(tmp_path, small_dataset, hub_offline):
    cfg = compose_config(
        "score", [f"data.path={small_dataset}", f"output_dir={tmp_path / 'out'}", "metrics=paper"]
    )
    with pytest.raises(MetricLoadError) as failure:
        score.run(cfg)
    message = str(failure.value)
    for checkpoint, key in (
        ("bert-base-multilingual-cased", "metrics.bertscore.name_or_path"),
        ("lucadiliello/bleurt-base-128", "metrics.bleurt.checkpoint"),
        ("facebook/bart-large-cnn", "metrics.bartscore.name_or_path"),
    ):
        assert repr(checkpoint) in message and f"{key}=DIR" in message
    assert not (tmp_path / "out").exists()  # nothing written before the metrics load
