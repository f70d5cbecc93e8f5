"""The server's own limits (issue #15, item 9): a client that never finishes its headers is
cut off after ``--header-timeout``, too many or too large headers get a JSON 431, and the
``Server`` header names no product or version. Against a real ``serve`` process."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.processes import Gateway


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    # The backend never answers: these limits hold below the app, before any routing.
    gw = Gateway(
        "--backend",
        "http://127.0.0.1:9",
        "--no-auth",
        "--header-timeout",
        "1",
        env={"LLAMA_GATEWAY_MAX_HEADER_COUNT": "20", "LLAMA_GATEWAY_MAX_HEADER_BYTES": "4096"},
        wait_ready=False,
    )
    try:
        yield gw.start()
    finally:
        gw.stop()


def _read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_slowloris_is_closed_after_the_header_timeout(gateway: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        # Far longer than the 1 s limit: if the server never closes, recv raises instead.
        sock.settimeout(15)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        closed = False
        for _ in range(40):  # one more header line every 0.25 s, never the blank line
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.25)
            sock.setblocking(False)
            try:
                answer = sock.recv(65536)
                closed = True
                break
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
                sock.settimeout(15)
        assert closed, "a connection that never finished its headers stayed open for 10 s"
    if answer:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408")
        assert "did not arrive within 1 s" in json.loads(body)["error"]["message"]


def test_a_silent_connection_is_closed_too(gateway: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.settimeout(15)
        assert _read_until_closed(sock) == b""  # closed, with nothing to answer


def test_too_many_headers_get_a_json_431(gateway: Gateway) -> None:
    headers = {f"x-h{i}": "1" for i in range(30)}
    answer = httpx.get(f"{gateway.url}/v1/models", headers=headers, timeout=10)
    assert answer.status_code == 431
    assert answer.json()["error"]["message"] == "The request has more than 20 headers."
    assert answer.json()["error"]["code"] == "request_header_fields_too_large"


def test_oversized_headers_get_a_431_in_the_ollama_shape_on_its_paths(gateway: Gateway) -> None:
    answer = httpx.get(f"{gateway.url}/api/tags", headers={"x-big": "a" * 5000}, timeout=10)
    assert answer.status_code == 431
    assert answer.json() == {"error": "The request headers exceed 4096 bytes."}


def test_no_server_header_and_keep_alive_still_works(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for _ in range(3):  # one connection, several requests: the deadline re-arms each time
            answer = client.get("/health")
            assert answer.status_code == 200
            assert "server" not in answer.headers
