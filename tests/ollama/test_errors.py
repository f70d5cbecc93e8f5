"""Bad requests get Ollama's ``{"error": "…"}`` with the right status, before anything is
queued: missing and unknown models, wrong types, and what llama-server cannot do."""

from __future__ import annotations

from typing import Any

import httpx
import ollama
import pytest

from tests.ollama.conftest import EMBED_MODEL, HI, MODEL
from tests.support.processes import Gateway

pytestmark = pytest.mark.llama


def _error(gateway: Gateway, path: str, body: Any, status: int) -> str:
    sent = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = httpx.post(f"{gateway.url}{path}", timeout=30, **sent)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert set(answer) == {"error"} and isinstance(answer["error"], str), answer
    return answer["error"]


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/api/embed", "/api/show"])
def test_a_missing_model(gateway: Gateway, path: str) -> None:
    assert _error(gateway, path, {"messages": HI, "prompt": "x", "input": "x"}, 400) == (
        "model is required"
    )


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/api/embed", "/api/show"])
def test_an_unknown_model(gateway: Gateway, path: str) -> None:
    body = {"model": "no-such-model", "messages": HI, "prompt": "x", "input": "x"}
    assert _error(gateway, path, body, 404) == "model 'no-such-model' not found"


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/api/chat", b"{not json", "invalid JSON"),
        ("/api/chat", [1, 2], "JSON object"),
        ("/api/chat", {"model": 7, "messages": HI}, "invalid model"),
        ("/api/chat", {"model": MODEL, "messages": "hi"}, "invalid messages"),
        ("/api/chat", {"model": MODEL, "messages": [{"content": "hi"}]}, "messages[0].role"),
        ("/api/chat", {"model": MODEL, "messages": HI, "stream": "yes"}, "invalid stream"),
        ("/api/chat", {"model": MODEL, "messages": HI, "options": []}, "invalid options"),
        (
            "/api/chat",
            {"model": MODEL, "messages": HI, "options": {"temperature": "hot"}},
            "options.temperature",
        ),
        ("/api/chat", {"model": MODEL, "messages": HI, "format": "yaml"}, "invalid format"),
        ("/api/chat", {"model": MODEL, "messages": HI, "think": "very"}, "invalid think"),
        ("/api/chat", {"model": MODEL, "messages": HI, "keep_alive": "soon"}, "keep_alive"),
        ("/api/generate", {"model": MODEL, "prompt": 3}, "invalid prompt"),
        ("/api/generate", {"model": MODEL, "prompt": "x", "template": "{{ .Prompt }}"}, "template"),
        ("/api/generate", {"model": MODEL, "prompt": "x", "context": [1, 2]}, "context"),
        ("/api/embed", {"model": EMBED_MODEL, "input": [1]}, "invalid input"),
        ("/api/embed", {"model": EMBED_MODEL}, "input is required"),
        ("/api/embed", {"model": EMBED_MODEL, "input": "x", "dimensions": 0}, "dimensions"),
    ],
)
def test_wrong_fields(gateway: Gateway, path: str, body: Any, says: str) -> None:
    assert says in _error(gateway, path, body, 400)


def test_what_the_runner_cannot_do_is_refused_before_the_queue(gateway: Gateway) -> None:
    too_long = {"model": MODEL, "messages": HI, "options": {"num_ctx": 8192}}
    assert "1024 tokens" in _error(gateway, "/api/chat", too_long, 400)
    image = {"role": "user", "content": "What is this?", "images": ["iVBORw0KGgo="]}
    says = _error(gateway, "/api/chat", {"model": MODEL, "messages": [image]}, 400)
    assert "does not take images" in says
    unload = {"model": MODEL, "keep_alive": 0}
    assert "does not run" in _error(gateway, "/api/generate", unload, 400)


def test_a_suffix_goes_to_infill_which_says_when_the_model_cannot(gateway: Gateway) -> None:
    """SmolLM2 has no fill-in-the-middle tokens: llama-server's own 501 and message, in
    Ollama's shape."""
    body = {"model": MODEL, "prompt": "def add(a, b):", "suffix": "    return c"}
    assert "Infill is not supported by this model" in _error(gateway, "/api/generate", body, 501)


def test_the_client_raises_the_error(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        client.chat(model="no-such-model", messages=HI)
    assert raised.value.status_code == 404
    assert raised.value.error == "model 'no-such-model' not found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/create"),
        ("POST", "/api/copy"),
        ("DELETE", "/api/delete"),
        ("POST", "/api/push"),
    ],
)
def test_model_store_routes_say_they_are_not_supported(
    gateway: Gateway, method: str, path: str
) -> None:
    response = httpx.request(method, f"{gateway.url}{path}", json={"model": MODEL}, timeout=30)
    assert response.status_code == 501
    assert "not supported" in response.json()["error"]
