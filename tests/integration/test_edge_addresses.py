"""No internal address reaches a client (#15 item 10): a backend that dies before the pool's
probes notice is still the one a request is sent to; the client's 502 (or the error event of
its stream) says the backend could not be reached, not where it was. The log says where."""

from __future__ import annotations

import httpx
import pytest

from tests.support.processes import Gateway, LlamaServer

pytestmark = pytest.mark.llama

CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


def test_a_dead_backend_is_not_named_to_the_client(llama_bin: str, model_path: str) -> None:
    backend = LlamaServer(llama_bin, model_path, parallel=1, ctx_size=512).start()
    # Probes far apart: the request, not a probe, is the first to meet the dead backend.
    gw = Gateway("--backend", backend.url, "--no-auth", "--probe-interval", "600")
    try:
        gw.start()
        assert httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, timeout=60).is_success
        backend.kill()

        answers = [
            httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, timeout=60),
            httpx.post(f"{gw.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=60),
        ]
        address = f"127.0.0.1:{backend.port}"
        for answer in answers:
            assert answer.status_code in (502, 503), answer.text
            assert answer.headers["content-type"].startswith("application/json")
            message = answer.json()["error"]["message"]
            assert message
            for internal in (address, str(backend.port), "http://", "Connect"):
                assert internal not in answer.text, answer.text
        assert address in gw.log()  # the operator still learns which backend failed
    finally:
        gw.stop()
        backend.stop()
