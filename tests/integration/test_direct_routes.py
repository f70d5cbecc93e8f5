"""The POSTs answered without Litestar's router (``surfaces/direct.py``: the forwarding
routes and Ollama's generation) answer as Litestar answers them.

One gateway with API keys, a small body limit and one CORS origin, over a real llama-server:
a request without an ``Origin`` takes the direct way, the same request from the allowed
origin goes through Litestar (its CORS layer adds the headers). Each pair must match —
status, body (byte for byte where the answer is deterministic), and every header but the
per-request ones — for successes, streams and each kind of refusal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.processes import Gateway, LlamaServer

ADMIN = "direct-admin-token"
ORIGIN = "https://app.example.com"
BODY_LIMIT = 4096
CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
#: Headers whose values differ between any two requests (their names must still match).
PER_REQUEST = {"date", "x-request-id", "retry-after", "content-length"}
PER_REQUEST_PREFIXES = ("x-ratelimit-remaining-", "x-ratelimit-reset-")


def _cors_only(name: str) -> bool:
    """A header only Litestar's CORS layer adds."""
    return name.startswith("access-control-") or name == "vary"


@pytest.fixture(scope="module")
def gateway_with_cors(backends: list[LlamaServer]) -> Iterator[Gateway]:
    gw = Gateway(
        "--backend",
        backends[0].url,
        "--admin-token",
        ADMIN,
        env={"LLAMA_GATEWAY_CORS_ORIGINS": ORIGIN, "LLAMA_GATEWAY_MAX_BODY_BYTES": str(BODY_LIMIT)},
    )
    try:
        yield gw.start()
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def key(gateway_with_cors: Gateway) -> str:
    return gateway_with_cors.create_key(ADMIN, name="direct")


def _pair(
    gw: Gateway, path: str, headers: dict[str, str] | None = None, **request: object
) -> tuple[httpx.Response, httpx.Response]:
    """The same POST the direct way, then through Litestar."""
    with httpx.Client(base_url=gw.url, timeout=120) as client:
        direct = client.post(path, headers=headers or {}, **request)  # type: ignore[arg-type]
        routed = client.post(path, headers={**(headers or {}), "Origin": ORIGIN}, **request)  # type: ignore[arg-type]
    assert "access-control-allow-origin" not in direct.headers
    assert routed.headers["access-control-allow-origin"] == ORIGIN  # Litestar's CORS layer ran
    return direct, routed


def _same_headers(direct: httpx.Response, routed: httpx.Response) -> None:
    assert direct.status_code == routed.status_code, (direct.text, routed.text)
    names = [k for k in routed.headers if not _cors_only(k)]
    assert list(direct.headers) == names

    def fixed(answer: httpx.Response) -> dict[str, str]:
        return {
            k: v
            for k, v in answer.headers.items()
            if k in names and k not in PER_REQUEST and not k.startswith(PER_REQUEST_PREFIXES)
        }

    assert fixed(direct) == fixed(routed)
    assert len(direct.headers["x-request-id"]) == 32


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/tokenize", {"content": "Hello there"}),
        ("/detokenize", {"tokens": [19556, 665]}),
        ("/v1/messages/count_tokens", {"model": "smollm2", "messages": CHAT["messages"]}),
    ],
)
def test_deterministic_answers_match_byte_for_byte(
    gateway_with_cors: Gateway, key: str, path: str, body: dict
) -> None:
    direct, routed = _pair(gateway_with_cors, path, _bearer(key), json=body)
    _same_headers(direct, routed)
    assert direct.status_code == 200
    assert direct.content == routed.content


def test_a_whole_chat_answer_matches(gateway_with_cors: Gateway, key: str) -> None:
    direct, routed = _pair(gateway_with_cors, "/v1/chat/completions", _bearer(key), json=CHAT)
    _same_headers(direct, routed)
    assert direct.headers["content-type"] == "application/json"
    assert int(direct.headers["content-length"]) == len(direct.content)
    assert direct.json().keys() == routed.json().keys()
    assert direct.json()["usage"]["completion_tokens"] == 2


def test_a_streamed_chat_answer_matches(gateway_with_cors: Gateway, key: str) -> None:
    body = {**CHAT, "stream": True}
    direct, routed = _pair(gateway_with_cors, "/v1/chat/completions", _bearer(key), json=body)
    _same_headers(direct, routed)
    assert direct.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert "content-length" not in direct.headers
    for answer in (direct, routed):
        events = [line for line in answer.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        assert json.loads(events[0].removeprefix("data: "))["object"] == "chat.completion.chunk"


@pytest.mark.parametrize("stream", [False, True])
def test_an_ollama_chat_answer_matches(gateway_with_cors: Gateway, key: str, stream: bool) -> None:
    body = {**CHAT, "stream": stream, "options": {"num_predict": 2}}
    direct, routed = _pair(gateway_with_cors, "/api/chat", _bearer(key), json=body)
    _same_headers(direct, routed)
    assert direct.status_code == 200
    expected = "application/x-ndjson" if stream else "application/json"
    assert direct.headers["content-type"] == expected
    for answer in (direct, routed):
        lines = [json.loads(line) for line in answer.text.splitlines() if line]
        assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 2
        assert lines[0]["message"]["role"] == "assistant"


@pytest.mark.parametrize(
    ("path", "headers", "content", "status"),
    [
        ("/v1/chat/completions", {}, json.dumps(CHAT), 401),  # no key
        ("/v1/messages", {"x-api-key": "sk-wrong"}, json.dumps(CHAT), 401),  # Anthropic's shape
        ("/v1/chat/completions", None, b'{"model": "smollm2", "messages": [', 400),
        ("/v1/chat/completions", None, json.dumps({**CHAT, "model": "gpt-9"}), 404),
        ("/v1/messages", None, json.dumps({**CHAT, "model": "gpt-9"}), 404),
        ("/v1/chat/completions", None, b"x" * (BODY_LIMIT + 1), 413),
        ("/api/chat", {}, json.dumps(CHAT), 401),  # Ollama's shape
        ("/api/chat", None, json.dumps({**CHAT, "model": "gpt-9"}), 404),
        ("/api/generate", None, b"[1, 2]", 400),
    ],
)
def test_refusals_match_byte_for_byte(
    gateway_with_cors: Gateway,
    key: str,
    path: str,
    headers: dict[str, str] | None,
    content: bytes | str,
    status: int,
) -> None:
    sent = _bearer(key) if headers is None else headers
    direct, routed = _pair(
        gateway_with_cors, path, {**sent, "Content-Type": "application/json"}, content=content
    )
    _same_headers(direct, routed)
    assert direct.status_code == status
    assert direct.content == routed.content
    error = direct.json()
    if path == "/v1/messages":
        assert error["type"] == "error" and error["error"]["message"]
    elif path.startswith("/api/"):
        assert isinstance(error["error"], str) and error["error"]
    else:
        assert error["error"]["message"]


def test_a_body_over_the_limit_without_a_length_is_a_413(
    gateway_with_cors: Gateway, key: str
) -> None:
    """Sent chunked (no ``Content-Length``): refused once the bytes read pass the limit."""

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"x" * 1024

    with httpx.Client(base_url=gateway_with_cors.url, timeout=60) as client:
        answer = client.post("/v1/chat/completions", headers=_bearer(key), content=chunks())
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "request_too_large"


def test_a_rate_limited_key_is_refused_alike(gateway_with_cors: Gateway) -> None:
    """The 429 carries ``Retry-After`` and the limit headers, the direct way as through
    Litestar."""
    limited = gateway_with_cors.create_key(ADMIN, name="direct-limited", rpm=1)
    first = httpx.post(
        f"{gateway_with_cors.url}/tokenize", json={"content": "a"}, headers=_bearer(limited)
    )
    assert first.status_code == 200, first.text
    direct, routed = _pair(gateway_with_cors, "/tokenize", _bearer(limited), json={"content": "a"})
    assert direct.status_code == 429
    _same_headers(direct, routed)
    assert int(direct.headers["retry-after"]) >= 1
    assert direct.headers["x-ratelimit-remaining-requests"] == "0"
