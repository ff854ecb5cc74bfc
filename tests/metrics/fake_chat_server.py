"""A chat-completions server on 127.0.0.1 for the judge's tests: scripted failures, counted requests.

`POST /v1/chat/completions` answers with the first scripted `Reply` still queued, else with `failure`
once `paid_limit` answers were granted, else as `answer_fn` decides from the user message. Everything
received is recorded so tests can count calls, the paid ones (HTTP 200 with an answer) and the largest
number of requests in flight at once.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CANDIDATES_RE = re.compile(r"Candidate A: \n(.*)\n\nCandidate B: \n(.*)\n\nGiven the instruction", re.S)
_QUALITY_RE = re.compile(r"quality (\d+)")


def shown_texts(prompt: str) -> tuple[str, str]:
    """The candidate texts shown as A and as B in a judge prompt."""
    match = _CANDIDATES_RE.search(prompt)
    assert match is not None, f"not a judge prompt: {prompt!r}"
    return match.group(1), match.group(2)


def quality_judge(prompt: str) -> str:
    """A consistent judge: the text with the higher "quality N" wins; equal ones tie, good when N >= 2."""
    text_a, text_b = shown_texts(prompt)
    quality_a, quality_b = (int(_QUALITY_RE.search(t).group(1)) for t in (text_a, text_b))
    if quality_a > quality_b:
        return "1. A is better"
    if quality_b > quality_a:
        return "2. B is better"
    return "3. Same good" if quality_a >= 2 else "4. Same bad"


@dataclass
class Reply:
    """One scripted reply: a status with a JSON body, a chat answer, or a dropped connection."""

    status: int = 200
    content: str | None = None  # the answer for a 200; None asks answer_fn
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # raw body, sent as is (for a 200 too: a broken completion)
    drop: bool = False  # close the connection without answering, as a dead server


@dataclass
class Received:
    """One request as the server saw it."""

    body: dict[str, Any]
    authorization: str | None
    at: float

    @property
    def prompt(self) -> str:
        return self.body["messages"][-1]["content"]


class FakeChatServer:
    """The server; use as a context manager. `base_url` is set once started.

    Args:
        answer_fn: user message -> answer, for requests no scripted reply covers.
        paid_limit: after this many paid answers every request gets `failure` (the server "dies" mid-run).
        failure: what a dead server does.
    """

    def __init__(
        self,
        answer_fn: Callable[[str], str] = quality_judge,
        paid_limit: int | None = None,
        failure: Reply | None = None,
    ) -> None:
        self.answer_fn = answer_fn
        self.paid_limit = paid_limit
        self.failure = failure or Reply(status=500, body='{"error": {"message": "server down"}}')
        self.script: deque[Reply] = deque()
        self.delay_s = 0.0
        self.received: list[Received] = []
        self.paid: list[Received] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._granted = 0
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.base_url = ""

    def __enter__(self) -> FakeChatServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    def next_reply(self, prompt: str) -> Reply:
        """Pick the reply to a request (called under `lock`)."""
        if self.script:
            return self.script.popleft()
        # Counted when granted, not when sent, so concurrent requests cannot overshoot the limit.
        if self.paid_limit is not None and self._granted >= self.paid_limit:
            return self.failure
        self._granted += 1
        return Reply(delay_s=self.delay_s)


class _Handler(BaseHTTPRequestHandler):
    owner: FakeChatServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for a delayed ACK (~40 ms).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # keep test output clean

    def do_POST(self) -> None:
        server = self.owner
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions":
            self._send(404, '{"error": {"message": "no such route"}}')
            return
        received = Received(body, self.headers.get("Authorization"), time.monotonic())
        with server.lock:
            server.received.append(received)
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
            reply = server.next_reply(received.prompt)
        try:
            time.sleep(reply.delay_s)
            if reply.drop:
                self.close_connection = True
                return
            if reply.status != 200 or reply.body is not None:
                self._send(reply.status, reply.body or "{}", reply.headers)
                return
            content = reply.content if reply.content is not None else server.answer_fn(received.prompt)
            prompt_tokens = len(received.prompt.split())
            completion_tokens = len(content.split())
            with server.lock:
                server.paid.append(received)
            self._send(
                200,
                json.dumps(
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    }
                ),
            )
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left
        finally:
            with server.lock:
                server.in_flight -= 1

    def _send(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
