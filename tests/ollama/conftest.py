"""The Ollama surface's tests: the official ``ollama`` Python client against real gateways over
real ``llama-server`` backends (the session ``gateway`` fixture: two chat backends serving
``smollm2``, aliased ``smol``, and an embeddings backend, ``smollm2-embed``)."""

from __future__ import annotations

import ollama
import pytest

from tests.support.processes import Gateway

MODEL = "smollm2"
EMBED_MODEL = "smollm2-embed"
HI = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> ollama.Client:
    return ollama.Client(host=gateway.url, timeout=120)
