"""Inputs that once got a 5xx or a plain-text answer (#15 item 6), against the real gateway:
every refusal is JSON in its surface's shape and a 4xx, whatever layer refuses it — the
router, the app's URL limit, or the HTTP parser below the app."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.support.processes import Gateway

CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


def _raw(gw: Gateway, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes no well-behaved client would; the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            head, sep, body = answer.partition(b"\r\n\r\n")
            if sep:
                headers = dict(
                    line.decode("latin-1").lower().split(": ", 1)
                    for line in head.split(b"\r\n")[1:]
                )
                if len(body) >= int(headers.get("content-length", "0")):
                    return int(head.split()[1]), headers, body
    raise AssertionError(f"no complete answer: {answer[:200]!r}")


def test_doubled_slashes_reach_the_route(gateway: Gateway) -> None:
    """The router matched ``//v1/chat/completions`` but the telemetry did not: a 500."""
    answer = httpx.post(f"{gateway.url}//v1//chat/completions", json=CHAT, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"]
    assert httpx.get(f"{gateway.url}//v1/models").status_code == 200


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/models", "openai"),
        ("/v1/messages", "anthropic"),
        ("/api/tags", "ollama"),
    ],
)
@pytest.mark.parametrize("length", [10_000, 100_000])
def test_an_overlong_url_is_a_json_414(
    gateway: Gateway, path: str, shape: str, length: int
) -> None:
    """10 KB: over the app's ``max_url_bytes``; 100 KB: past what the HTTP parser can hold, so
    the protocol below the app refuses it."""
    target = f"{path}?q={'a' * length}".encode()
    status, headers, body = _raw(gateway, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414, body
    assert headers["content-type"].startswith("application/json")
    assert headers["x-content-type-options"] == "nosniff"
    if length < 65_536:  # refused by the app's edge, which gives every answer an id
        assert len(headers["x-request-id"]) == 32
    error = httpx.Response(status, content=body).json()
    if shape == "openai":
        assert error["error"]["code"] == "uri_too_long" and error["error"]["message"]
    elif shape == "anthropic":
        assert error["type"] == "error" and error["error"]["message"]
    else:
        assert isinstance(error["error"], str) and error["error"]


def test_malformed_http_is_a_json_400(gateway: Gateway) -> None:
    status, headers, body = _raw(gateway, b"GET /v1/models HTTP/1.1\r\nHost x\r\n\r\n")
    assert status == 400, body
    assert headers["content-type"].startswith("application/json")
    assert httpx.Response(status, content=body).json()["error"]["message"]


@pytest.mark.parametrize("token", [-1, 10**9])
def test_token_ids_out_of_range_are_a_400(gateway: Gateway, token: int) -> None:
    """Found by the fuzzer: llama-server answers a token id outside its vocabulary with a 500
    (``vector::_M_range_check``); that is the request's fault, not the backend's."""
    answer = httpx.post(
        f"{gateway.url}/detokenize", json={"model": "smollm2", "tokens": [token]}, timeout=30
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["message"]
