"""The LLM judge against a local chat-completions server that fails on cue (fake_chat_server.py)."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pytest

from blender.metrics.judge import (
    JudgeError,
    JudgeSettings,
    PairwiseJudge,
    gpt_ranks,
    judge_split,
    mean_gpt_rank_by_model,
)
from blender.metrics.judge_prompt import combine_verdicts, deduplicate_string, parse_label, swap_label
from tests.metrics.fake_chat_server import FakeChatServer, Reply, shown_texts

KEY_ENV = "BLENDER_TEST_JUDGE_KEY"
SECRET = "sk-test-0123456789-SECRET"


@dataclass
class Cand:
    model: str
    text: str


@dataclass
class Rec:
    instruction: str
    input: str
    candidates: list[Cand]


def make_records(n_records: int, qualities: list[int]) -> list[Rec]:
    """Records whose candidate "m{i}" says "quality q": quality_judge prefers the higher q."""
    return [
        Rec(
            instruction=f"Question {r}?",
            input=f"context {r}",
            # Quality first: deduplicate_string would cut a text ending in a word it already holds.
            candidates=[
                Cand(f"m{i}", f"quality {q} answer to question {r} by m{i}") for i, q in enumerate(qualities)
            ],
        )
        for r in range(n_records)
    ]


def true_label(quality_a: int, quality_b: int) -> str:
    if quality_a != quality_b:
        return "A is better" if quality_a > quality_b else "B is better"
    return "Same good" if quality_a >= 2 else "Same bad"


def expected_cmp_results(qualities: list[int]) -> dict[str, str]:
    return {
        f"m{i},m{j}": true_label(qualities[i], qualities[j])
        for i in range(len(qualities))
        for j in range(i + 1, len(qualities))
    }


@pytest.fixture
def server():
    with FakeChatServer() as srv:
        yield srv


@pytest.fixture
def settings(server: FakeChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JudgeSettings:
    monkeypatch.setenv(KEY_ENV, SECRET)
    return JudgeSettings(
        base_url=server.base_url,
        api_key_env=KEY_ENV,
        max_concurrency=2,
        max_retries=3,
        backoff_base_s=0.001,
        backoff_max_s=0.01,
        timeout_s=2.0,
        cache_path=str(tmp_path / "judge.sqlite"),
        price_per_1k_prompt=0.5,
        price_per_1k_completion=1.5,
    )


# The paper's prompt, line by line: note the space ending each header line and the final newline.
PAPER_PROMPT_A_FIRST = "\n".join(
    [
        "Instruction: ",
        "Name a color.",
        "",
        "Input: ",
        "Answer in one word.",
        "",
        "Candidate A: ",
        "Blue.",
        "",
        "Candidate B: ",
        "Red is a color that is red...",
        "",
        "Given the instruction and input above, please compare the two candidates.",
        "You only have 4 choices to output:",
        "If you think A is better, please output: 1. A is better",
        "If you think B is better, please output: 2. B is better",
        "If you think both are good enough correctly give the answer, please output: 3. Same good",
        "If you think both are bad and do not follow the instruction, please output: 4. Same bad",
        "Do not output anything else except the 4 choices above.",
        "Output your choice below:",
        "",
    ]
)


def test_request_is_the_papers_prompt_and_settings(server: FakeChatServer, settings: JudgeSettings) -> None:
    record = Rec(
        "Name a color.",
        "Answer in one word.",
        # deduplicate_string cuts the text at the repeated window "is a color that".
        [Cand("x", "Blue."), Cand("y", "Red is a color that is red is a color that is red")],
    )
    server.answer_fn = lambda prompt: "1. A is better"
    with PairwiseJudge(replace(settings, both_orders=True)) as judge:
        judge.judge_records([record])

    bodies = {shown_texts(r.prompt)[0]: r.body for r in server.received}
    assert set(bodies) == {"Blue.", "Red is a color that is red..."}
    body = bodies["Blue."]
    assert body["messages"] == [
        {"role": "system", "content": "You are an AI assistant that helps people find information."},
        {"role": "user", "content": PAPER_PROMPT_A_FIRST},
    ]
    assert (body["model"], body["temperature"], body["max_tokens"], body["stop"]) == (
        "gpt-3.5-turbo",
        0.0,
        2048,
        ["\n"],
    )
    assert {r.authorization for r in server.received} == {f"Bearer {SECRET}"}


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("1. A is better", "A is better"),
        ("2. B is better", "B is better"),
        ("3. Same good", "Same good"),
        ("4. Same bad", "Same bad"),
        ("  3  ", "Same good"),
        ("4.", "Same bad"),
        ("1) A is better.", "A is better"),
        ("same BAD", "Same bad"),
        ("B is better", "B is better"),
        ("1. B is better", None),  # digit and text disagree
        ("5. A is better", None),
        ("12", None),
        ("A is better because it is shorter", None),
        ("I think 1. A is better", None),
        ("The answer is 2", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_label_is_strict(answer: str | None, label: str | None) -> None:
    assert parse_label(answer) == label


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a short answer", "a short answer"),
        ("we go to the park and we go to the park and", "we go to the park and..."),
        # The authors' quirks, kept: a short tail window matches any earlier substring.
        ("a cat and a", "a cat and..."),
        ("iron on", "iron..."),
        ("", "..."),
    ],
)
def test_deduplicate_string_matches_the_authors(text: str, expected: str) -> None:
    assert deduplicate_string(text) == expected


@pytest.mark.parametrize(
    ("first", "second", "combined"),
    [
        ("A is better", "A is better", "A is better"),
        ("Same bad", "Same bad", "Same bad"),
        ("A is better", "B is better", "Same good"),
        ("B is better", "Same good", "Same good"),
        ("A is better", "Same bad", "Same bad"),
        ("Same good", "Same bad", "Same bad"),
    ],
)
def test_combine_verdicts(first: str, second: str, combined: str) -> None:
    assert combine_verdicts(first, second) == combined
    assert combine_verdicts(second, first) == combined


def test_swap_label() -> None:
    swapped = [swap_label(label) for label in ("A is better", "B is better", "Same good", "Same bad")]
    assert swapped == ["B is better", "A is better", "Same good", "Same bad"]


def test_order_is_seeded_and_labels_map_back(
    server: FakeChatServer, settings: JudgeSettings, tmp_path: Path
) -> None:
    qualities = [3, 1, 4, 1, 5, 0]
    records = make_records(2, qualities)

    def shown_orders() -> set[tuple[str, str]]:
        return {shown_texts(r.prompt) for r in server.received}

    cmp_results, _ = judge_split(records, settings)
    assert cmp_results == [expected_cmp_results(qualities)] * 2
    first_orders = shown_orders()
    # Some pairs show the later candidate first, some not: the randomisation is real.
    later_first = [a > b for a, b in first_orders]
    assert any(later_first) and not all(later_first)

    server.received.clear()
    judge_split(records, replace(settings, cache_path=str(tmp_path / "same_seed.sqlite")))
    assert shown_orders() == first_orders

    server.received.clear()
    judge_split(records, replace(settings, seed=7, cache_path=str(tmp_path / "other_seed.sqlite")))
    assert shown_orders() != first_orders


def test_both_orders_cancels_position_bias(
    server: FakeChatServer, settings: JudgeSettings, tmp_path: Path
) -> None:
    qualities = [2, 0, 1]
    records = make_records(1, qualities)
    both = replace(settings, both_orders=True)
    assert judge_split(records, both)[0] == [expected_cmp_results(qualities)]
    assert len(server.paid) == 2 * 3

    # A judge that always picks the first shown candidate: one order would take its bias for a verdict.
    server.answer_fn = lambda prompt: "1. A is better"
    cmp_results, _ = judge_split(records, replace(both, cache_path=str(tmp_path / "biased.sqlite")))
    assert cmp_results == [{"m0,m1": "Same good", "m0,m2": "Same good", "m1,m2": "Same good"}]
    one_order, _ = judge_split(records, replace(settings, cache_path=str(tmp_path / "biased_once.sqlite")))
    assert set(one_order[0].values()) <= {"A is better", "B is better"}


def test_retries_429_500_timeout_and_garbage(server: FakeChatServer, settings: JudgeSettings) -> None:
    server.script.extend(
        [
            Reply(status=429, headers={"Retry-After": "0.3"}, body='{"error": {"message": "slow down"}}'),
            Reply(status=500),
            Reply(status=200, content="I would say A, probably"),
            Reply(delay_s=0.6),  # longer than the client's timeout
            Reply(status=503, body="<html>bad gateway</html>"),
            Reply(status=200, content="not valid json either"),  # parsed as an answer: unparsable
        ]
    )
    records = make_records(1, [1, 2])
    cmp_results, tally = judge_split(records, replace(settings, timeout_s=0.3, max_retries=4))
    assert cmp_results == [{"m0,m1": "B is better"}]
    assert len(server.received) == 7
    # Retry-After was honoured although the exponential backoff is a few milliseconds.
    assert server.received[1].at - server.received[0].at >= 0.29
    assert (tally.paid_calls, tally.unparsable, tally.retries) == (3, 2, 4)


def test_broken_200_replies_are_retried(server: FakeChatServer, settings: JudgeSettings) -> None:
    server.script.extend([Reply(body="<html>proxy error</html>"), Reply(body='{"choices": []}')])
    cmp_results, tally = judge_split(make_records(1, [2, 1]), settings)
    assert cmp_results == [{"m0,m1": "A is better"}]
    assert (len(server.received), tally.retries, tally.paid_calls) == (3, 2, 1)


def test_unparsable_answers_raise_naming_the_pair(server: FakeChatServer, settings: JudgeSettings) -> None:
    server.answer_fn = lambda prompt: "Both are fine I guess"
    with pytest.raises(JudgeError, match=r"pair 'm0,m1'.*last answer 'Both are fine I guess'"):
        judge_split(make_records(1, [1, 2]), replace(settings, max_parse_retries=2))
    assert len(server.received) == 3


def test_server_errors_raise_after_max_retries(server: FakeChatServer, settings: JudgeSettings) -> None:
    server.paid_limit = 0
    with pytest.raises(JudgeError, match=r"record 0, pair 'm0,m1'.*gave up after 4 attempts.*HTTP 500"):
        judge_split(make_records(1, [1, 2]), settings)
    assert len(server.received) == 4


def test_bad_key_fails_at_once_without_showing_it(
    server: FakeChatServer, settings: JudgeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.script.append(
        Reply(status=401, body=f'{{"error": {{"message": "Incorrect API key provided: {SECRET}"}}}}')
    )
    with pytest.raises(JudgeError, match="HTTP 401") as error:
        judge_split(make_records(1, [1, 2]), settings)
    assert len(server.received) == 1
    assert SECRET not in str(error.value) and "***" in str(error.value)
    assert SECRET not in caplog.text


def test_a_server_masked_key_is_not_shown_either(
    server: FakeChatServer, settings: JudgeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    # OpenAI's 401 quotes the key's first 8 and last 4 characters around asterisks.
    masked = SECRET[:8] + "*" * 12 + SECRET[-4:]
    caplog.set_level(logging.DEBUG)
    server.script.append(
        Reply(status=401, body=f'{{"error": {{"message": "Incorrect API key provided: {masked}"}}}}')
    )
    with pytest.raises(JudgeError, match="HTTP 401") as error:
        judge_split(make_records(1, [1, 2]), settings)
    for part in (masked, SECRET[:8], SECRET[-4:]):
        assert part not in str(error.value) and part not in caplog.text


def test_a_key_given_where_its_variable_belongs_is_refused_without_echoing_it(
    settings: JudgeSettings,
) -> None:
    with pytest.raises(ValueError, match="must name an environment variable") as error:
        replace(settings, api_key_env=SECRET)
    assert SECRET not in str(error.value) and SECRET[:8] not in str(error.value)


def test_one_fatal_error_ends_the_others_retries(server: FakeChatServer, settings: JudgeSettings) -> None:
    server.script.append(Reply(status=401))
    server.paid_limit = 0  # every other request gets HTTP 500
    slow_retries = replace(settings, backoff_base_s=0.5, backoff_max_s=0.5, max_retries=8)
    start = time.monotonic()
    with pytest.raises(JudgeError, match="HTTP 401"):
        judge_split(make_records(1, [1, 2, 3]), slow_retries)
    # Without the stop, the pairs stuck on 500s would retry for about 8 x 0.4 s.
    assert time.monotonic() - start < 1.0
    assert len(server.received) <= 4


def test_missing_key_is_named(settings: JudgeSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(JudgeError, match=f"environment variable {KEY_ENV} is not set"):
        judge_split(make_records(1, [1, 2]), settings)


def test_concurrency_is_bounded(server: FakeChatServer, settings: JudgeSettings) -> None:
    server.delay_s = 0.05
    judge_split(make_records(2, [1, 2, 3, 4]), replace(settings, max_concurrency=3))
    assert len(server.paid) == 12
    assert server.max_in_flight == 3


def test_rerun_is_served_from_the_cache(
    server: FakeChatServer, settings: JudgeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = make_records(2, [1, 2, 3])
    first, tally = judge_split(records, settings)
    assert (tally.paid_calls, tally.cache_hits) == (6, 0)
    # A cached rerun needs no key: nothing is sent.
    monkeypatch.delenv(KEY_ENV)
    again, tally = judge_split(records, settings)
    assert again == first
    assert (tally.paid_calls, tally.cache_hits) == (0, 6)
    assert len(server.received) == 6


@pytest.mark.parametrize(
    "failure", [Reply(status=500), Reply(drop=True)], ids=["http_500", "connection_dropped"]
)
def test_crash_then_recovery_pays_each_prompt_once(settings: JudgeSettings, failure: Reply) -> None:
    """The server dies after 5 answers, the run fails; a restarted server finishes with no repeated call."""
    qualities = [3, 1, 4, 1, 5]
    records = make_records(2, qualities)  # 20 pairs
    with FakeChatServer(paid_limit=5, failure=failure) as dying:
        with pytest.raises(JudgeError, match="gave up after"):
            judge_split(records, replace(settings, base_url=dying.base_url, max_retries=2))
    assert len(dying.paid) == 5
    with sqlite3.connect(settings.cache_path) as db:
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == len(dying.paid)

    # The restarted server listens elsewhere: the cache does not key on the URL.
    with FakeChatServer() as restarted:
        cmp_results, tally = judge_split(records, replace(settings, base_url=restarted.base_url))
    assert cmp_results == [expected_cmp_results(qualities)] * 2
    assert (tally.cache_hits, tally.paid_calls) == (len(dying.paid), 20 - len(dying.paid))
    paid_prompts = Counter(r.prompt for r in dying.paid + restarted.paid)
    assert len(paid_prompts) == 20
    assert set(paid_prompts.values()) == {1}


_CHILD_JUDGE = """
import json, sys
from types import SimpleNamespace as NS
from blender.metrics.judge import JudgeSettings, judge_split
job = json.load(open(sys.argv[1]))
records = [NS(**{**r, "candidates": [NS(**c) for c in r["candidates"]]}) for r in job["records"]]
judge_split(records, JudgeSettings(**job["settings"]))
"""


@pytest.mark.slow
def test_killed_process_restarts_without_paying_twice(
    server: FakeChatServer, settings: JudgeSettings, tmp_path: Path
) -> None:
    """A judging process is killed (SIGKILL) mid-run; the rerun pays only for the answers it never got."""
    qualities = [3, 1, 4, 1, 5]
    records = make_records(2, qualities)  # 20 pairs
    # After 5 answers the server hangs, so the child is killed with requests in flight.
    server.paid_limit, server.failure = 5, Reply(status=503, delay_s=30)
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"records": [asdict(r) for r in records], "settings": asdict(settings)}))
    repo_root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD_JUDGE, str(job)], env=env)
    try:
        deadline = time.monotonic() + 30
        while _cached_answers(settings.cache_path) < 5:
            assert child.poll() is None and time.monotonic() < deadline, "the child judge never got 5 answers"
            time.sleep(0.02)
    finally:
        child.kill()
        child.wait()
    assert len(server.paid) == 5

    server.paid_limit = None
    cmp_results, tally = judge_split(records, settings)
    assert cmp_results == [expected_cmp_results(qualities)] * 2
    assert (tally.cache_hits, tally.paid_calls) == (5, 15)
    paid_prompts = Counter(r.prompt for r in server.paid)
    assert len(paid_prompts) == 20 and set(paid_prompts.values()) == {1}


def _cached_answers(cache_path: str) -> int:
    if not Path(cache_path).exists():
        return 0
    try:
        with sqlite3.connect(cache_path) as db:
            return db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    except sqlite3.OperationalError:  # the child has not created the table yet
        return 0


def test_key_stays_out_of_logs_and_cache(
    server: FakeChatServer, settings: JudgeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.script.extend(
        [Reply(status=429, headers={"retry-after-ms": "1"}), Reply(status=500), Reply(content="?")]
    )
    judge_split(make_records(2, [1, 2, 3]), settings)
    assert "retry" in caplog.text and "unparsable" in caplog.text  # the failures were logged
    assert SECRET not in caplog.text
    assert SECRET not in repr(settings)
    for path in Path(settings.cache_path).parent.glob("judge.sqlite*"):
        assert SECRET.encode() not in path.read_bytes()


def test_tally_counts_tokens_and_cost(server: FakeChatServer, settings: JudgeSettings) -> None:
    server.script.append(Reply(content="garbage answer"))
    _, tally = judge_split(make_records(1, [1, 2, 3]), settings)
    prompt_tokens = sum(len(r.prompt.split()) for r in server.paid)
    assert (tally.paid_calls, tally.unparsable, tally.cache_hits) == (4, 1, 0)
    assert tally.prompt_tokens == prompt_tokens
    assert tally.completion_tokens == 2 + 3 * 4  # "garbage answer", then three "N. X is better"-style answers
    assert tally.cost == pytest.approx((prompt_tokens * 0.5 + tally.completion_tokens * 1.5) / 1000)


def test_gpt_rank_from_judged_split(settings: JudgeSettings) -> None:
    qualities = [3, 1, 4, 1, 5]
    records = make_records(3, qualities)
    cmp_results, _ = judge_split(records, settings)
    # Scores: m4 +8, m2 +4, m0 0, m1 and m3 -6 (their tie counts 0) -> competition ranks.
    for ranks in gpt_ranks(records, cmp_results):
        assert ranks.tolist() == [3, 4, 2, 4, 1]
    assert mean_gpt_rank_by_model(records, cmp_results) == {
        "m4": 1.0,
        "m2": 2.0,
        "m0": 3.0,
        "m1": 4.0,
        "m3": 4.0,
    }


def test_records_with_fewer_than_two_candidates_need_no_call(
    server: FakeChatServer, settings: JudgeSettings
) -> None:
    records = [Rec("q", "", []), Rec("q", "", [Cand("only", "quality 1")])]
    assert judge_split(records, settings)[0] == [{}, {}]
    assert server.received == []


def test_prompt_template_needs_all_placeholders() -> None:
    with pytest.raises(ValueError, match=r"lacks placeholders \['candidate2'\]"):
        JudgeSettings(prompt_template="${instruction} ${input} ${candidate1}")
    with pytest.raises(ValueError, match="bad placeholder"):
        JudgeSettings(prompt_template="${instruction} ${input} ${candidate1} ${candidate2} ${extra}")


def test_repeated_model_names_are_refused(settings: JudgeSettings) -> None:
    record = Rec("q", "", [Cand("same", "quality 1"), Cand("same", "quality 2")])
    with pytest.raises(JudgeError, match="record 0: candidates' models repeat"):
        judge_split([record], settings)


@pytest.mark.parametrize("choice", ["chatgpt", "gpt4_turbo", "local"])
def test_judge_configs_instantiate(choice: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("BLENDER_CACHE_DIR", str(tmp_path))
    conf_dir = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(overrides=[f"+judge={choice}"])
    settings = instantiate(cfg.judge)
    assert isinstance(settings, JudgeSettings)
    assert (settings.temperature, settings.max_tokens, settings.stop, settings.seed) == (
        0.0,
        2048,
        ["\n"],
        42,
    )
    assert settings.system_prompt == "You are an AI assistant that helps people find information."
    assert settings.cache_path == f"{tmp_path}/judge.sqlite"
    if choice != "local":
        assert settings.base_url == "http://127.0.0.1:9/v1"
        assert settings.api_key_env == "OPENAI_API_KEY"
    assert (
        settings.model
        == {"chatgpt": "gpt-3.5-turbo", "gpt4_turbo": "gpt-4-turbo", "local": "local-judge"}[choice]
    )
    PairwiseJudge(settings).close()  # builds without a key: it is read only when a request is sent
