"""A backend that dies mid-answer: the NDJSON stream ends with Ollama's ``{"error": "…"}``
line (no ``done: true``, no hang); a whole answer gets a 502 in the same shape."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.ollama.conftest import MODEL
from tests.support.processes import Gateway, LlamaServer

pytestmark = pytest.mark.llama

#: A raw prompt the model continues for as long as it may (counting does not end).
LONG = {
    "model": MODEL,
    "prompt": "1, 2, 3, 4, 5, 6, 7, 8,",
    "raw": True,
    "options": {"num_predict": 4000, "temperature": 0},
}


@pytest.fixture
def doomed(llama_bin: str, model_path: str) -> Iterator[tuple[LlamaServer, Gateway]]:
    """A gateway over one backend of its own, which the test kills."""
    server = LlamaServer(llama_bin, model_path, parallel=1, ctx_size=4096).start()
    gw = Gateway("--backend", server.url, "--no-auth", "--probe-interval", "0.5")
    try:
        yield server, gw.start()
    finally:
        gw.stop()
        server.stop()


def test_a_stream_cut_by_a_dying_backend_ends_with_an_error_line(
    doomed: tuple[LlamaServer, Gateway],
) -> None:
    server, gw = doomed
    lines = []
    with httpx.stream("POST", f"{gw.url}/api/generate", json=LONG, timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(json.loads(line))
            if len(lines) == 3:
                server.kill()
    assert len(lines) > 3 and not any(line.get("done") for line in lines)
    assert set(lines[-1]) == {"error"} and lines[-1]["error"]
    assert server.url.split("//")[1] not in lines[-1]["error"]  # no internal address


def test_a_whole_answer_cut_by_a_dying_backend_is_a_502(
    doomed: tuple[LlamaServer, Gateway],
) -> None:
    server, gw = doomed
    killer = threading.Timer(1.0, server.kill)
    killer.start()
    try:
        response = httpx.post(f"{gw.url}/api/generate", json={**LONG, "stream": False}, timeout=60)
    finally:
        killer.cancel()
    assert response.status_code == 502, response.text
    assert set(response.json()) == {"error"} and response.json()["error"]
