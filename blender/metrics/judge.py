"""LLM judge: pairwise comparisons through an OpenAI-compatible chat endpoint, and GPT-Rank from them.

PAPER.md §5 ("ChatGPT pairwise judging"): every unordered pair of a record's candidates is judged once, in
an A/B order drawn at random (p = 0.5), with the paper's verbatim prompt and system message, temperature 0,
max_tokens 2048, stop ["\\n"], candidate texts cut by `deduplicate_string`. The labels fill `cmp_results`
{"modelA,modelB": label}, from which `gpt_rank.py` computes GPT-Rank.

Where we differ from the authors' script, on purpose:
- The order of a pair is drawn from a hash of (seed, instruction, input, model names), not from one global
  `random.seed(42)` stream shared by threads: the same pair gets the same order in every run, whatever the
  thread timing or the slice of the split, so reruns hit the cache.
- The key names the pair in candidate order ("first,second" as the candidates list them) and the label is
  mapped to that orientation; the authors keyed by the order shown. `cmp_matrix` reads both the same way.
- Answers are parsed strictly (`parse_label`), and a pair that never gets a parsable answer raises instead
  of being dropped silently.
- `both_orders=True` judges each pair in both orders and combines the two labels (`combine_verdicts`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from itertools import combinations
from string import Template
from typing import Any, Protocol

import numpy as np

from blender.metrics.chat_client import ChatClient, ChatError, ChatReply
from blender.metrics.gpt_rank import CMP_LABELS, ranks_from_cmp_results
from blender.metrics.judge_cache import JudgeCache
from blender.metrics.judge_prompt import (
    PAPER_PROMPT_TEMPLATE,
    PAPER_SYSTEM_PROMPT,
    PROMPT_PLACEHOLDERS,
    combine_verdicts,
    deduplicate_string,
    parse_label,
    swap_label,
)

log = logging.getLogger(__name__)


class Candidate(Protocol):
    """What the judge reads from a candidate."""

    model: str
    text: str


class JudgedRecord(Protocol):
    """What the judge reads from a record (`blender.records.schema.Record` has these fields)."""

    instruction: str
    input: str
    candidates: Sequence[Candidate]


ENV_VAR_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")


class JudgeError(RuntimeError):
    """A pair could not be judged: it names the record, the pair and the last error or answer."""


@dataclass
class JudgeSettings:
    """How to reach the judge and how to ask it; the defaults are the paper's ChatGPT settings.

    Attributes:
        model: the judge model, as the endpoint names it.
        base_url: the API root of any OpenAI-compatible server ("/chat/completions" is appended).
        api_key_env: name of the environment variable holding the key (the key itself is never stored,
            logged or cached); None for a server without auth. Read only when a request must be sent.
        system_prompt: the system message.
        prompt_template: the user message, a `string.Template` with ${instruction}, ${input},
            ${candidate1} (shown as A) and ${candidate2} (shown as B).
        temperature: sampling temperature.
        max_tokens: answer length limit.
        stop: stop sequences (the paper's ["\\n"] keeps the answer to one line); None sends none.
        extra_body: further request fields (e.g. {"top_p": 1.0}); they are part of the cache key.
        both_orders: judge each pair in both orders and combine the labels (`combine_verdicts`), to cancel
            position bias at twice the cost; False judges one random order as the paper.
        seed: seeds the A/B order of each pair.
        dedup_repeat: window of `deduplicate_string` applied to candidate texts; None sends them as they are.
        max_concurrency: requests in flight at once (the paper used 5 threads).
        max_retries: retries of one request after a 408, 409, 429, 5xx, timeout or connection error.
        max_parse_retries: new requests after an unparsable answer (the paper's limit was 3).
        backoff_base_s: first wait before a retry; doubles each time.
        backoff_max_s: longest exponential wait (a server's Retry-After is honoured as sent).
        timeout_s: limit for connecting and for each read of a request.
        cache_path: SQLite file of answers; None keeps none (every run pays again). Answers are keyed by
            the request body (model, messages, sampling settings, `extra_body`), not by `base_url` or key:
            the same model behind a proxy or a restarted server shares answers; give two different judges
            that share a model name different files.
        price_per_1k_prompt: price per 1000 prompt tokens, for the cost estimate.
        price_per_1k_completion: price per 1000 completion tokens, for the cost estimate.
    """

    model: str = "gpt-3.5-turbo"
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str | None = "OPENAI_API_KEY"
    system_prompt: str = PAPER_SYSTEM_PROMPT
    prompt_template: str = PAPER_PROMPT_TEMPLATE
    temperature: float = 0.0
    max_tokens: int = 2048
    stop: list[str] | None = field(default_factory=lambda: ["\n"])
    extra_body: dict[str, Any] = field(default_factory=dict)
    both_orders: bool = False
    seed: int = 42
    dedup_repeat: int | None = 4
    max_concurrency: int = 5
    max_retries: int = 8
    max_parse_retries: int = 3
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    timeout_s: float = 60.0
    cache_path: str | None = ".cache/judge.sqlite"
    price_per_1k_prompt: float = 0.0
    price_per_1k_completion: float = 0.0

    def __post_init__(self) -> None:
        if self.api_key_env is not None and not ENV_VAR_NAME.match(self.api_key_env):
            # Never echo the value: it is most likely the key itself, pasted where its variable's name belongs.
            raise ValueError(
                "judge.api_key_env must name an environment variable (upper-case letters, digits and _, e.g. "
                "OPENAI_API_KEY), and what it holds does not look like one; if it is the key itself, put the key in "
                "an environment variable (export OPENAI_API_KEY=...) and set judge.api_key_env to that name"
            )
        if self.max_concurrency < 1:
            raise ValueError(f"JudgeSettings.max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_retries < 0 or self.max_parse_retries < 0:
            raise ValueError("JudgeSettings.max_retries and max_parse_retries must be >= 0")
        sentinels = {name: f"\x00{name}\x00" for name in PROMPT_PLACEHOLDERS}
        try:
            filled = Template(self.prompt_template).substitute(sentinels)
        except (KeyError, ValueError) as exc:
            raise ValueError(
                f"JudgeSettings.prompt_template: bad placeholder {exc}; use {PROMPT_PLACEHOLDERS}"
            ) from exc
        missing = [name for name, sentinel in sentinels.items() if sentinel not in filled]
        if missing:
            raise ValueError(f"JudgeSettings.prompt_template lacks placeholders {missing}")


@dataclass
class JudgeTally:
    """What the judge spent: calls, cache hits, tokens and estimated cost (cumulative over runs).

    Attributes:
        paid_calls: HTTP 200 answers received, parsable or not (each is billed).
        unparsable: paid answers that held no label and were asked again.
        cache_hits: requests answered from the cache, with no call.
        retries: failed attempts (429, 5xx, timeouts, connection errors) that a later attempt recovered.
        prompt_tokens: billed prompt tokens, from the replies' `usage`.
        completion_tokens: billed completion tokens, from the replies' `usage`.
        cost: estimated cost from the settings' prices.
    """

    paid_calls: int = 0
    unparsable: int = 0
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


def gpt_ranks(records: Sequence[JudgedRecord], cmp_results: Sequence[dict[str, str]]) -> list[np.ndarray]:
    """GPT-Rank of every candidate of every record (1 = best), from the judge's labels (PAPER.md §5).

    Args:
        records: the judged records.
        cmp_results: one {"modelA,modelB": label} per record, as `PairwiseJudge.judge_records` returns.
    Returns:
        One [n_candidates] integer array per record, in candidate order.
    """
    if len(records) != len(cmp_results):
        raise ValueError(f"gpt_ranks: {len(records)} records but {len(cmp_results)} cmp_results")
    return [
        ranks_from_cmp_results(results, [c.model for c in record.candidates])
        for record, results in zip(records, cmp_results, strict=True)
    ]


def mean_gpt_rank_by_model(
    records: Sequence[JudgedRecord], cmp_results: Sequence[dict[str, str]]
) -> dict[str, float]:
    """Average GPT-Rank of each model over the records it answered (the paper's per-LLM GPT-Rank column).

    Args:
        records: the judged records.
        cmp_results: one {"modelA,modelB": label} per record.
    Returns:
        {model: mean rank}, best (lowest) first.
    """
    ranks_by_model: dict[str, list[int]] = {}
    for record, ranks in zip(records, gpt_ranks(records, cmp_results), strict=True):
        for candidate, rank in zip(record.candidates, ranks, strict=True):
            ranks_by_model.setdefault(candidate.model, []).append(int(rank))
    means = {model: float(np.mean(ranks)) for model, ranks in ranks_by_model.items()}
    return dict(sorted(means.items(), key=lambda item: item[1]))


@dataclass(frozen=True)
class _Request:
    key: str  # sha256 of the JSON body: the cache key
    body: dict[str, Any]
    where: str  # names the record and pair in errors


class PairwiseJudge:
    """Judge candidate pairs through a chat endpoint, with retries, a bound on concurrency and a cache.

    Args:
        settings: endpoint, prompt and sampling settings; the paper's ChatGPT setup when None.

    Example:
        >>> with PairwiseJudge(JudgeSettings(cache_path="judge.sqlite")) as judge:  # doctest: +SKIP
        ...     cmp_results = judge.judge_records(records)
        ...     ranks = gpt_ranks(records, cmp_results)
    """

    def __init__(self, settings: JudgeSettings | None = None) -> None:
        self.settings = settings or JudgeSettings()
        self.tally = JudgeTally()
        self._cache = JudgeCache(self.settings.cache_path) if self.settings.cache_path else None
        self._client: ChatClient | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> PairwiseJudge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections and the cache."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def judge_records(self, records: Sequence[JudgedRecord]) -> list[dict[str, str]]:
        """Judge every unordered pair of each record's candidates.

        Answers already in the cache are not requested again; new answers are cached as they arrive, so
        after a failure a rerun only pays for what is missing.

        Args:
            records: objects with `.instruction`, `.input` and `.candidates` (each with `.model`, `.text`).
        Returns:
            One `cmp_results` per record: {"modelA,modelB": label}, A before B in candidate order, one
            entry per unordered pair, sorted by key as the paper's files are.
        Raises:
            JudgeError: a pair got no label (retries used up, a fatal HTTP status, or unparsable answers);
                the answers received before it are in the cache.
        """
        plans: list[dict[str, list[tuple[str, bool]]]] = []
        requests: dict[str, _Request] = {}
        for record_index, record in enumerate(records):
            plan: dict[str, list[tuple[str, bool]]] = {}
            models = _check_models(record, record_index)
            texts = [self._clean(c.text) for c in record.candidates]
            for i, j in combinations(range(len(models)), 2):
                pair = f"{models[i]},{models[j]}"
                swaps = (
                    [False, True]
                    if self.settings.both_orders
                    else [self._draw_swap(record, models[i], models[j])]
                )
                plan[pair] = []
                for swapped in swaps:
                    shown = (j, i) if swapped else (i, j)
                    body = self._body(record.instruction, record.input, texts[shown[0]], texts[shown[1]])
                    key = _request_key(body)
                    where = f"record {record_index}, pair {pair!r} shown as A={models[shown[0]]!r}"
                    requests.setdefault(key, _Request(key, body, where))
                    plan[pair].append((key, swapped))
            plans.append(plan)

        try:
            labels = self._resolve(requests)
        finally:
            self._log_tally()
        results = []
        for plan in plans:
            cmp_results = {}
            for pair, asked in sorted(plan.items()):
                verdicts = [swap_label(labels[key]) if swapped else labels[key] for key, swapped in asked]
                cmp_results[pair] = verdicts[0] if len(verdicts) == 1 else combine_verdicts(*verdicts)
            results.append(cmp_results)
        return results

    def _log_tally(self) -> None:
        tally = self.tally
        log.info(
            "judge %s, totals: %d paid calls (%d unparsable), %d cache hits, %d retries, %d prompt + %d "
            "completion tokens, estimated cost %.4f",
            self.settings.model,
            tally.paid_calls,
            tally.unparsable,
            tally.cache_hits,
            tally.retries,
            tally.prompt_tokens,
            tally.completion_tokens,
            tally.cost,
        )

    def _clean(self, text: str) -> str:
        repeat = self.settings.dedup_repeat
        return deduplicate_string(text, repeat) if repeat else text

    def _draw_swap(self, record: JudgedRecord, model_a: str, model_b: str) -> bool:
        # A str seed is hashed with SHA-512 by `random.Random`: the same draw in every process and run.
        seed = "\x1f".join((str(self.settings.seed), record.instruction, record.input, model_a, model_b))
        return random.Random(seed).random() >= 0.5

    def _body(self, instruction: str, input_text: str, text_a: str, text_b: str) -> dict[str, Any]:
        prompt = Template(self.settings.prompt_template).substitute(
            instruction=instruction, input=input_text, candidate1=text_a, candidate2=text_b
        )
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": [
                {"role": "system", "content": self.settings.system_prompt},
                {"role": "user", "content": prompt},
            ],
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
        }
        if self.settings.stop is not None:
            body["stop"] = list(self.settings.stop)
        body.update(self.settings.extra_body)
        return body

    def _resolve(self, requests: dict[str, _Request]) -> dict[str, str]:
        labels = self._cache.get_many(requests) if self._cache is not None else {}
        with self._lock:
            self.tally.cache_hits += len(labels)
        todo = [request for key, request in requests.items() if key not in labels]
        log.info(
            "judge %s: %d requests, %d cached, %d to send",
            self.settings.model,
            len(requests),
            len(labels),
            len(todo),
        )
        if not todo:
            return labels
        client = self._get_client()
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=min(self.settings.max_concurrency, len(todo))) as pool:
            futures = {pool.submit(self._ask, client, request, stop): request for request in todo}
            try:
                for n_done, future in enumerate(as_completed(futures), start=1):
                    labels[futures[future].key] = future.result()
                    if n_done % 100 == 0 or n_done == len(todo):
                        log.info("judge %s: %d/%d answered", self.settings.model, n_done, len(todo))
            except BaseException:
                # Drop queued requests and end others' retries; leaving the `with` waits for requests
                # already sent, whose answers (paid for) are cached as they arrive.
                stop.set()
                for future in futures:
                    future.cancel()
                raise
        return labels

    def _get_client(self) -> ChatClient:
        if self._client is None:
            api_key = None
            if self.settings.api_key_env:
                api_key = os.environ.get(self.settings.api_key_env)
                if not api_key:
                    raise JudgeError(
                        f"judge {self.settings.model}: environment variable {self.settings.api_key_env} is not set "
                        "(set it, or api_key_env=null for a server without auth)"
                    )
            self._client = ChatClient(
                self.settings.base_url,
                api_key,
                timeout_s=self.settings.timeout_s,
                max_retries=self.settings.max_retries,
                backoff_base_s=self.settings.backoff_base_s,
                backoff_max_s=self.settings.backoff_max_s,
                max_connections=self.settings.max_concurrency,
            )
        return self._client

    def _ask(self, client: ChatClient, request: _Request, stop: threading.Event) -> str:
        answer = None
        for attempt in range(self.settings.max_parse_retries + 1):
            if stop.is_set():
                raise JudgeError(
                    f"judge {self.settings.model}, {request.where}: stopped (another request failed)"
                )
            try:
                reply = client.complete(request.body, stop=stop)
            except ChatError as exc:
                raise JudgeError(f"judge {self.settings.model}, {request.where}: {exc}") from exc
            self._count(reply)
            label = parse_label(reply.content)
            if label is not None:
                if self._cache is not None:
                    self._cache.put(
                        request.key,
                        model=self.settings.model,
                        label=label,
                        answer=reply.content or "",
                        prompt_tokens=reply.prompt_tokens,
                        completion_tokens=reply.completion_tokens,
                    )
                return label
            answer = reply.content
            with self._lock:
                self.tally.unparsable += 1
            if attempt < self.settings.max_parse_retries:
                log.warning(
                    "judge %s, %s: unparsable answer %r; asking again (%d/%d)",
                    self.settings.model,
                    request.where,
                    answer,
                    attempt + 1,
                    self.settings.max_parse_retries,
                )
        raise JudgeError(
            f"judge {self.settings.model}, {request.where}: no label in {self.settings.max_parse_retries + 1} "
            f"answers; last answer {answer!r} (expected one of {list(CMP_LABELS)}, or its number 1-4)"
        )

    def _count(self, reply: ChatReply) -> None:
        cost = (
            reply.prompt_tokens * self.settings.price_per_1k_prompt
            + reply.completion_tokens * self.settings.price_per_1k_completion
        ) / 1000
        with self._lock:
            self.tally.paid_calls += 1
            self.tally.retries += reply.retries
            self.tally.prompt_tokens += reply.prompt_tokens
            self.tally.completion_tokens += reply.completion_tokens
            self.tally.cost += cost


def judge_split(
    records: Sequence[JudgedRecord], settings: JudgeSettings
) -> tuple[list[dict[str, str]], JudgeTally]:
    """Judge a split's records with a fresh judge and close it.

    Args:
        records: objects with `.instruction`, `.input` and `.candidates` (each with `.model`, `.text`).
        settings: the judge settings.
    Returns:
        The records' `cmp_results` and what the run spent.
    """
    with PairwiseJudge(settings) as judge:
        return judge.judge_records(records), judge.tally


def _check_models(record: JudgedRecord, record_index: int) -> list[str]:
    models = [candidate.model for candidate in record.candidates]
    if len(set(models)) != len(models):
        raise JudgeError(
            f"record {record_index}: candidates' models repeat ({models}); cmp_results keys need unique names"
        )
    for model in models:
        if "," in model:
            raise JudgeError(
                f"record {record_index}: model name {model!r} contains ',', which cmp_results keys split on"
            )
    return models


def _request_key(body: dict[str, Any]) -> str:
    # The body holds everything that shapes the answer (model, messages, sampling) and nothing secret.
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
