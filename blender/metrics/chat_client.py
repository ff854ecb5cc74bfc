"""A small client for OpenAI-compatible chat completions: retries with backoff, a key kept out of messages.

Retried, as the OpenAI SDK does: HTTP 408, 409, 429 and 5xx, timeouts, connection errors and 200 replies
that are not chat completions. A 429's `retry-after-ms` / `Retry-After` header is honoured; other waits are
exponential with jitter. Any other status (400, 401, 403, 404, ...) fails at once: asking again cannot help.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({408, 409, 429})
# Tokens that look like API keys, masked or not: "sk-proj-AbC...", "sk-********wxyz", "Bearer abc123...".
KEY_LIKE = re.compile(r"\b(?:sk|pk|rk|key)-[A-Za-z0-9_\-*.]{4,}|Bearer\s+\S+|\*{4,}[A-Za-z0-9]{0,8}")


class ChatError(RuntimeError):
    """A chat request failed for good: a status that retrying cannot fix, or retries used up."""


@dataclass(frozen=True)
class ChatReply:
    """One chat completion as the server returned it.

    Attributes:
        content: the first choice's message text (None when the server sent none, e.g. a refusal).
        finish_reason: the first choice's finish reason, as sent.
        prompt_tokens: `usage.prompt_tokens` (0 when the server sent no usage).
        completion_tokens: `usage.completion_tokens` (0 when the server sent no usage).
        retries: how many failed attempts came before this reply.
    """

    content: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    retries: int


class ChatClient:
    """POST chat completions to one OpenAI-compatible endpoint; thread-safe (one shared `httpx.Client`).

    Args:
        base_url: the API root, e.g. "https://api.openai.com/v1"; "/chat/completions" is appended.
        api_key: sent as "Authorization: Bearer ..."; None sends no header (local servers). It never
            appears in a log line or an error message: server text quoting it is redacted.
        timeout_s: limit for connecting and for each read/write of a request.
        max_retries: retries after the first attempt before giving up.
        backoff_base_s: the first wait; it doubles on each retry.
        backoff_max_s: the longest exponential wait (a server's Retry-After is honoured as sent).
        max_connections: size of the connection pool, at least the number of threads using the client.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 60.0,
        max_retries: int = 8,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        max_connections: int = 5,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            headers=headers,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        # Jitter needs no seed: it only spreads retries of concurrent requests apart.
        self._jitter = random.Random()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def complete(self, body: dict[str, Any], stop: threading.Event | None = None) -> ChatReply:
        """Send one chat-completions request, retrying transient failures.

        Args:
            body: the JSON body ("model", "messages", sampling settings).
            stop: when set, retries end at once (a request already sent still gets its answer).
        Returns:
            The first choice of the first successful (HTTP 200) reply.
        Raises:
            ChatError: on a status that is not retried, when `max_retries` retries all failed, or when
                `stop` was set while waiting to retry.
        """
        last_error = ""
        for attempt in range(self.max_retries + 1):
            wait_s = self._backoff_s(attempt)
            try:
                response = self._http.post(self.url, json=body)
            except httpx.TimeoutException as exc:
                last_error = f"timed out ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last_error = f"connection failed ({type(exc).__name__}: {self._redact(str(exc))})"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return _reply_from_json(response.json(), retries=attempt)
                    except (ValueError, KeyError, IndexError, TypeError) as exc:
                        last_error = f"HTTP 200 but not a chat completion ({type(exc).__name__}: {exc})"
                elif status in RETRIED_STATUSES or status >= 500:
                    last_error = f"HTTP {status}: {self._redact(response.text[:300])}"
                    retry_after_s = _retry_after_s(response.headers)
                    if retry_after_s is not None:
                        wait_s = retry_after_s
                else:
                    raise ChatError(
                        f"POST {self.url}: HTTP {status} (not retried): {self._redact(response.text[:500])}"
                    )
            if attempt == self.max_retries:
                break
            log.warning(
                "POST %s: %s; retry %d/%d in %.2fs",
                self.url,
                last_error,
                attempt + 1,
                self.max_retries,
                wait_s,
            )
            if stop is not None and stop.wait(wait_s):
                raise ChatError(
                    f"POST {self.url}: retries stopped (another request failed); last: {last_error}"
                )
            if stop is None:
                time.sleep(wait_s)
        raise ChatError(f"POST {self.url}: gave up after {self.max_retries + 1} attempts; last: {last_error}")

    def _backoff_s(self, attempt: int) -> float:
        # "Equal jitter": at least half the exponential wait, so retries never stampede back at once.
        wait_s = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        return wait_s / 2 + self._jitter.uniform(0, wait_s / 2)

    def _redact(self, text: str) -> str:
        """Servers quote a rejected key back, whole or masked (OpenAI's 401 shows its first 8 and last 4
        characters around asterisks); no part of ours reaches a log or an error."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
        text = KEY_LIKE.sub("***", text)
        if self._api_key and len(self._api_key) >= 12:
            for part in (self._api_key[:8], self._api_key[-4:]):
                text = text.replace(part, "***")
        return text


def _reply_from_json(data: dict[str, Any], retries: int) -> ChatReply:
    choice = data["choices"][0]
    usage = data.get("usage") or {}
    return ChatReply(
        content=choice["message"].get("content"),
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        retries=retries,
    )


def _retry_after_s(headers: httpx.Headers) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI) or `Retry-After` (seconds or an HTTP date)."""
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
