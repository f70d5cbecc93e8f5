"""The Ollama routes take the same path as the OpenAI ones: a Bearer key (the client's
``headers``), the key's model allow-list and limits (real Redis), with refusals in Ollama's
shape. The probes clients send first need no key."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import ollama
import pytest

from tests.ollama.conftest import HI, MODEL
from tests.support.processes import Gateway, LlamaServer
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.llama

ADMIN = "admin-secret-for-ollama-tests"


@pytest.fixture(scope="module")
def keyed(backends: list[LlamaServer], redis_server: RedisServer) -> Iterator[Gateway]:
    gw = Gateway(
        "--backend",
        backends[0].url,
        "--admin-token",
        ADMIN,
        "--redis-url",
        redis_server.url,
        "--queue-timeout",
        "300",
    )
    try:
        yield gw.start()
    finally:
        gw.stop()


def _client(gw: Gateway, key: str | None) -> ollama.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return ollama.Client(host=gw.url, headers=headers, timeout=120)


def test_probes_need_no_key_and_the_api_does(keyed: Gateway) -> None:
    assert httpx.get(f"{keyed.url}/").text == "Ollama is running"
    assert httpx.get(f"{keyed.url}/api/version").status_code == 200
    for call in (lambda c: c.list(), lambda c: c.ps(), lambda c: c.chat(model=MODEL, messages=HI)):
        with pytest.raises(ollama.ResponseError) as raised:
            call(_client(keyed, None))
        assert raised.value.status_code == 401
    response = httpx.get(f"{keyed.url}/api/tags", headers={"Authorization": "Bearer sk-lg-nope"})
    assert response.status_code == 401 and set(response.json()) == {"error"}


def test_a_key_reaches_its_models_only(keyed: Gateway) -> None:
    client = _client(keyed, keyed.create_key(ADMIN, name="ollama-user", models=[MODEL]))
    assert MODEL in [m.model for m in client.list().models]
    assert client.chat(model=MODEL, messages=HI, options={"num_predict": 3}).message.content
    other = _client(keyed, keyed.create_key(ADMIN, name="ollama-other", models=["another-model"]))
    with pytest.raises(ollama.ResponseError) as raised:
        other.chat(model=MODEL, messages=HI)
    assert raised.value.status_code == 403 and MODEL in raised.value.error


def test_a_limited_key_gets_429_with_retry_after(keyed: Gateway) -> None:
    key = keyed.create_key(ADMIN, name="ollama-slow", rpm=1)
    client = _client(keyed, key)
    assert client.chat(model=MODEL, messages=HI, options={"num_predict": 2}).done
    with pytest.raises(ollama.ResponseError) as raised:
        client.chat(model=MODEL, messages=HI, options={"num_predict": 2})
    assert raised.value.status_code == 429
    response = httpx.post(
        f"{keyed.url}/api/generate",
        json={"model": MODEL, "prompt": "Hi", "stream": True},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 429
    assert set(response.json()) == {"error"} and response.json()["error"]
    assert int(response.headers["Retry-After"]) >= 1
