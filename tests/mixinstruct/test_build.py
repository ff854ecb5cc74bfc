"""The build configs compose, and the fixture build runs end to end (sources -> mix -> candidates from two
tiny models and the generator, here a random tiny Gemma 3 in place of the packaged 270M one (that one runs in
tests/integration/test_gemma3_270m.py) -> offline metrics -> a judge on a local fake server -> the finished
folder), skipping complete stages, resuming a killed scoring run, and training a ranker on what it built."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from blender.cli import train_ranker
from blender.cli.build_data import run
from blender.files import read_jsonl_rows, write_json_atomic
from blender.metrics.judge import JudgeError
from blender.metrics.scoring import journal_path
from blender.mixinstruct.build import build_settings_from_dict
from blender.records import load_candidates
from tests.conftest import compose_config
from tests.metrics.fake_chat_server import FakeChatServer, shown_texts

REPO = Path(__file__).resolve().parents[2]
OFFLINE_METRICS = ["bertscore", "bleu", "rouge1", "rouge2", "rougeL"]
ALL_STAGES = ["sources", "mix", "generate", "merge", "score", "judge", "finalize"]
MODELS = ["tiny-llama-chat", "tiny-gpt2", "gemma-3-270m"]
N_PAIRS = len(MODELS) * (len(MODELS) - 1) // 2
# The fixture recipe's generator as a random tiny Gemma 3 (same architecture and back end, seconds to run).
TINY_GENERATOR = [
    "data_build.generator=${data_build.tiny_models_dir}/tiny-gemma3",
    "data_build.generator_tiny={model_type: gemma3, seed: 2}",
]


def _compose(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("build_data", overrides=overrides)


def longer_wins(prompt: str) -> str:
    """A judge that prefers the longer answer: deterministic, whatever the tiny models wrote."""
    text_a, text_b = shown_texts(prompt)
    return "1. A is better" if len(text_a) >= len(text_b) else "2. B is better"


def fixture_overrides(
    out_dir: Path, server: FakeChatServer | None = None, cache: Path | None = None
) -> list[str]:
    overrides = ["data_build=fixture", f"data_build.out_dir={out_dir}", *TINY_GENERATOR]
    if server is not None:
        overrides += [
            "judge=local",
            f"judge.base_url={server.base_url}",
            "judge.model=fake-judge",
            f"judge.cache_path={cache or out_dir / 'judge.sqlite'}",
            "judge.max_retries=1",
            "judge.backoff_base_s=0.01",
        ]
    return overrides


@pytest.fixture(scope="module")
def judge_server() -> Iterator[FakeChatServer]:
    with FakeChatServer(answer_fn=longer_wins) as server:
        yield server


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, judge_server: FakeChatServer) -> tuple[Path, dict]:
    """One fixture build with the judge on, shared by the tests below (they copy it before changing it)."""
    out_dir = tmp_path_factory.mktemp("build")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)  # the fixture config's source paths are relative to the repository
        status = run(_compose(fixture_overrides(out_dir, judge_server)))
    return out_dir, status


def copy_build(built: tuple[Path, dict], tmp_path: Path) -> Path:
    out_dir = tmp_path / "build"
    shutil.copytree(built[0], out_dir)
    return out_dir


def copy_overrides(built: tuple[Path, dict], out_dir: Path, *args: object) -> list[str]:
    # The copy keeps the original's tiny models, so its candidates stay valid.
    return [*fixture_overrides(out_dir, *args), f"data_build.tiny_models_dir={built[0] / 'tiny_models'}"]


def test_paper_config_holds_the_papers_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIXINSTRUCT_DOLLY", raising=False)
    cfg = _compose(["data_build=mixinstruct", "data_build.out_dir=/tmp/x"])
    s = build_settings_from_dict(OmegaConf.to_container(cfg.data_build, resolve=True))
    assert s.mix.caps == {"gpt4all": 100000, "dolly": 15000, "alpaca_gpt4": 52000, "sharegpt": 50000}
    assert (s.mix.n_train, s.mix.n_val, s.mix.n_test, s.mix.seed) == (100000, 5000, 5000, 42)
    assert len(s.models) == 11 and len({m.name for m in s.models}) == 11
    g = s.generation
    assert (g.decoding_method, g.top_p, g.temperature, g.max_new_tokens) == ("top_p_sampling", 1.0, 0.7, 256)
    dolly = next(x for x in s.sources if x.name == "dolly")
    assert dolly.path is None and dolly.hub_id == "HuggingFaceH4/databricks_dolly_15k"
    # The paper's metrics on every split, ChatGPT's labels on test.
    assert list(cfg.metrics) == ["bertscore", "bleurt", "bartscore"] and cfg.judge.model == "gpt-3.5-turbo"
    assert (s.score_splits, s.judge_splits) == (["train", "val", "test"], ["test"])
    monkeypatch.setenv("MIXINSTRUCT_DOLLY", "/data/databricks-dolly-15k.jsonl")
    cfg = _compose(["data_build=mixinstruct", "~judge", "metrics=offline"])
    assert cfg.data_build.sources.dolly.path == "/data/databricks-dolly-15k.jsonl"
    assert "judge" not in cfg and "bleu" in cfg.metrics
    fixture = _compose(["data_build=fixture"])
    assert list(fixture.metrics) == OFFLINE_METRICS and "judge" not in fixture


def test_fixture_build_makes_a_scored_judged_dataset(
    built: tuple[Path, dict], judge_server: FakeChatServer
) -> None:
    out_dir, status = built
    assert status == dict.fromkeys(ALL_STAGES, "ran")
    final = out_dir / "mixinstruct"
    train, val, test = load_candidates(final, splits=("train", "val", "test"))
    card = json.loads((final / "data_card.json").read_text())
    mix_card = json.loads((out_dir / "mix" / "data_card.json").read_text())
    for split, records in zip(("train", "val", "test"), (train, val, test), strict=True):
        assert len(records) == card["stage_counts"]["final"][split] == mix_card["splits"][split]["count"] > 0
        for record in records:
            assert record.models == MODELS
            assert all(isinstance(c.text, str) for c in record.candidates)
            for candidate in record.candidates:
                assert set(OFFLINE_METRICS) <= set(candidate.scores)
                assert all(math.isfinite(v) for v in candidate.scores.values())
            # The judge labels test only (the paper's release); one pair per record with two candidates.
            assert (record.cmp_results is not None) == (split == "test")
    assert all(len(r.cmp_results) == N_PAIRS and "tiny-llama-chat,tiny-gpt2" in r.cmp_results for r in test)
    assert len(judge_server.paid) == N_PAIRS * len(test)
    assert card["judging"]["model"] == "fake-judge" and card["judging"]["splits"] == ["test"]
    assert list(card["scoring"]["metrics"]) == OFFLINE_METRICS
    assert card["stage_counts"]["judge"] == {"test": len(test)}
    assert "| score | 10 | 3 | 3 |" in (final / "DATA_CARD.md").read_text()


def test_a_second_run_does_no_work(built: tuple[Path, dict], judge_server: FakeChatServer) -> None:
    out_dir, _ = built
    n_requests = len(judge_server.received)
    final_stat = (out_dir / "mixinstruct" / "manifest.json").stat().st_mtime_ns
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        assert run(_compose(fixture_overrides(out_dir, judge_server))) == dict.fromkeys(ALL_STAGES, "skipped")
    assert len(judge_server.received) == n_requests
    assert (out_dir / "mixinstruct" / "manifest.json").stat().st_mtime_ns == final_stat


def test_a_killed_scoring_run_resumes_from_its_journal(
    built: tuple[Path, dict], judge_server: FakeChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = copy_build(built, tmp_path)
    scored = out_dir / "scored" / "val.jsonl"
    key = json.loads((out_dir / "scored" / "val.done.json").read_text())["key"]
    rows = read_jsonl_rows(scored)
    # What a kill leaves: the run's key, a journal with one finished chunk and a torn line, no output.
    rows[0]["candidates"][0]["scores"]["bleu"] = 123.0  # a mark: a rescored record would lose it
    write_json_atomic(out_dir / "scored" / "val.pending.json", {"key": key})
    journal_path(scored).write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[1])[:40])
    scored.unlink()
    (out_dir / "scored" / "val.done.json").unlink()

    monkeypatch.chdir(REPO)
    status = run(_compose(copy_overrides(built, out_dir, judge_server)))
    assert status["score"] == "ran" and status["judge"] == status["finalize"] == "skipped"
    again = read_jsonl_rows(scored)
    assert again[0]["candidates"][0]["scores"]["bleu"] == 123.0
    assert [r["id"] for r in again] == [r["id"] for r in rows]
    assert not journal_path(scored).exists() and not (out_dir / "scored" / "val.pending.json").exists()


def test_a_changed_mix_redoes_what_it_touches(
    built: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = copy_build(built, tmp_path)
    monkeypatch.chdir(REPO)
    # No judge this time: the test split's finished records change too (no cmp_results).
    status = run(_compose(copy_overrides(built, out_dir) + ["data_build.mix.n_val=2"]))
    assert status == {
        "sources": "skipped",
        "mix": "ran",
        "generate": "ran",
        "merge": "ran",
        "score": "ran",
        "judge": "skipped",
        "finalize": "ran",
    }
    (val, test) = load_candidates(out_dir / "mixinstruct", splits=("val", "test"))
    assert len(val) == 2 and all(r.cmp_results is None for r in test)


def test_a_judge_that_stays_down_fails_clearly_then_resumes_from_its_cache(
    built: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = copy_build(built, tmp_path)
    monkeypatch.chdir(REPO)
    cache = tmp_path / "judge2.sqlite"
    # Another judge model: the test split must be judged again. The server dies after one answer.
    with FakeChatServer(answer_fn=longer_wins, paid_limit=1) as dying:
        cfg = _compose(copy_overrides(built, out_dir, dying, cache) + ["judge.model=fake-judge-2"])
        with pytest.raises(JudgeError, match="HTTP 500"):
            run(cfg)
    assert (
        not (out_dir / "judged" / "test.done.json").exists()
        or json.loads((out_dir / "judged" / "test.done.json").read_text())["judge"] == "fake-judge"
    )
    with FakeChatServer(answer_fn=longer_wins) as healthy:
        status = run(_compose(copy_overrides(built, out_dir, healthy, cache) + ["judge.model=fake-judge-2"]))
        n_test = len(read_jsonl_rows(out_dir / "merged" / "test.jsonl"))
        assert (
            len(healthy.paid) == N_PAIRS * n_test - 1
        )  # the answer paid for before the failure: from the cache
    assert status["judge"] == status["finalize"] == "ran"
    card = json.loads((out_dir / "mixinstruct" / "data_card.json").read_text())
    assert card["judging"]["model"] == "fake-judge-2"


def test_a_judge_without_its_key_fails_before_any_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BLENDER_TEST_NO_KEY", raising=False)
    cfg = _compose(
        [
            "data_build=fixture",
            f"data_build.out_dir={tmp_path}",
            "judge=chatgpt",
            "judge.api_key_env=BLENDER_TEST_NO_KEY",
        ]
    )
    with pytest.raises(JudgeError, match=r"needs \$BLENDER_TEST_NO_KEY"):
        run(cfg)
    assert not (tmp_path / "sources").exists()


def test_a_ranker_trains_on_the_build(built: tuple[Path, dict], tmp_path: Path) -> None:
    final = built[0] / "mixinstruct"
    cfg = compose_config(
        "train_ranker",
        [
            "experiment=smoke",
            "data=mixinstruct",
            f"data.path={final}",
            "data.val_split=val",
            "data.signals=[bertscore]",
            "data.val_oracle=bertscore",
            f"output_dir={tmp_path / 'run'}",
        ],
    )
    summary = train_ranker.run(cfg)
    assert summary["global_step"] == 2
    # Evaluated on test against the judge's labels (GPT-Rank), as the paper evaluates on MixInstruct.
    rows = {r["method"]: r for r in summary["eval"]["rows"]}
    assert rows["Oracle (cmp_results)"]["gpt_rank"] == 1.0


def test_unknown_stage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown stages"):
        run(_compose(["data_build=fixture", f"data_build.out_dir={tmp_path}", "stages=[scoring]"]))
